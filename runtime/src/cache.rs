//! A small bounded map with first-in-first-out eviction. Caches here hold compiled modules
//! and outputs keyed by sha256; FIFO is enough because a process sees few distinct modules,
//! and it keeps memory bounded for an agent that receives many uploads over time.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

pub(crate) struct Fifo<K, V> {
    map: HashMap<K, V>,
    order: VecDeque<K>,
    capacity: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> Fifo<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Fifo {
            map: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    pub(crate) fn get(&self, k: &K) -> Option<V> {
        self.map.get(k).cloned()
    }

    pub(crate) fn insert(&mut self, k: K, v: V) {
        if self.map.insert(k.clone(), v).is_none() {
            self.order.push_back(k);
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_oldest_first() {
        let mut c = Fifo::new(2);
        c.insert(1, "a");
        c.insert(2, "b");
        c.insert(1, "a2");
        c.insert(3, "c");
        assert_eq!(c.get(&1), None);
        assert_eq!(c.get(&2), Some("b"));
        assert_eq!(c.get(&3), Some("c"));
        assert_eq!(c.len(), 2);
    }
}

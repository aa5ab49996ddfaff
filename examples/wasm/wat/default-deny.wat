;; default-deny: the smallest useful sluice policy module, in WebAssembly text.
;;
;; It ignores the inventory and returns one cluster-wide policy that selects every endpoint,
;; isolating it in both directions (Kubernetes semantics) and allowing only DNS to kube-dns,
;; plus the policy that lets DNS into kube-dns: the cluster is closed by default and other
;; policies open what is needed.
;;
;; It shows the whole ABI v1 by hand: the exports, a bump allocator, the packed
;; (ptr << 32 | len) result, a log call and the metadata sections.
(module
  (@custom "sluice.name" "default-deny")
  (@custom "sluice.version" "1.0.0")

  (import "sluice" "log" (func $log (param i32 i32 i32)))

  (memory (export "memory") 1)

  ;; Bump allocator: the input goes after the static data. Memory grows when needed.
  (global $next (mut i32) (i32.const 4096))

  (func (export "sluice_abi_version") (result i32) (i32.const 1))

  (func (export "sluice_alloc") (param $len i32) (result i32)
    (local $ptr i32) (local $end i32) (local $pages i32)
    (local.set $ptr (global.get $next))
    (local.set $end (i32.add (local.get $ptr) (local.get $len)))
    ;; pages needed = ceil(end / 64 KiB) - current pages
    (local.set $pages
      (i32.sub
        (i32.shr_u (i32.add (local.get $end) (i32.const 65535)) (i32.const 16))
        (memory.size)))
    (if (i32.gt_s (local.get $pages) (i32.const 0))
      (then
        (if (i32.eq (memory.grow (local.get $pages)) (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $next (local.get $end))
    (local.get $ptr))

  (func (export "sluice_generate") (param $in_ptr i32) (param $in_len i32) (result i64)
    (call $log (i32.const 2) (i32.const 0) (i32.const 29))
    ;; (ptr << 32) | len of the document below.
    (i64.or
      (i64.shl (i64.const 64) (i64.const 32))
      (i64.const 777)))

  (data (i32.const 0) "default-deny: closing cluster")
  (data (i32.const 64)
    "{\"items\":["
    "{\"kind\":\"policy\",\"name\":\"default-deny\",\"subject\":{},\"isolate\":[\"ingress\",\"egress\"],\"rules\":["
    "{\"name\":\"dns\",\"direction\":\"egress\",\"action\":\"allow\","
    "\"peers\":[{\"peer\":\"endpoints\",\"namespaces\":{\"exprs\":[{\"key\":\"kubernetes.io/metadata.name\",\"op\":\"eq\",\"values\":[\"kube-system\"]}]},"
    "\"pods\":{\"exprs\":[{\"key\":\"k8s-app\",\"op\":\"eq\",\"values\":[\"kube-dns\"]}]}}],"
    "\"ports\":[{\"protocol\":{\"name\":\"udp\"},\"port\":{\"number\":53}},{\"protocol\":{\"name\":\"tcp\"},\"port\":{\"number\":53}}]}]},"
    "{\"kind\":\"policy\",\"name\":\"dns-in\",\"namespace\":\"kube-system\",\"subject\":{\"pods\":{\"exprs\":[{\"key\":\"k8s-app\",\"op\":\"eq\",\"values\":[\"kube-dns\"]}]}},\"rules\":["
    "{\"name\":\"dns\",\"direction\":\"ingress\",\"action\":\"allow\","
    "\"ports\":[{\"protocol\":{\"name\":\"udp\"},\"port\":{\"number\":53}},{\"protocol\":{\"name\":\"tcp\"},\"port\":{\"number\":53}}]}]}"
    "]}")
)

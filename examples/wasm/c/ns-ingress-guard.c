/*
 * ns-ingress-guard: a sluice policy module in freestanding C (no libc).
 *
 * For every namespace in the inventory except kube-system and those listed in
 * params.exempt, it emits a namespace-scoped policy that isolates ingress and allows it only
 * from pods of the same namespace: the classic "namespaces don't talk to each other".
 *
 * It shows the ABI v1 from C: exported functions by name, the sluice.log import, metadata
 * custom sections, a bump allocator on memory.grow, and a small JSON scanner (the host sends
 * canonical JSON, but the scanner accepts any valid JSON).
 *
 * Build: clang-19 --target=wasm32 -O2 -mbulk-memory -nostdlib -Wl,--no-entry -Wl,--export-dynamic
 */

typedef unsigned int u32;
typedef unsigned long long u64;
typedef unsigned long size_t;

#define EXPORT(name) __attribute__((export_name(name)))

__attribute__((import_module("sluice"), import_name("log")))
void sluice_log(int level, const char *ptr, u32 len);

/* Metadata for `sluice module inspect`: custom sections, written in assembly because clang
 * has no attribute for them (this is also how rustc emits #[link_section] on wasm). */
__asm__(".section .custom_section.sluice.name,\"\",@\n"
        ".ascii \"ns-ingress-guard\"\n"
        ".section .custom_section.sluice.version,\"\",@\n"
        ".ascii \"1.0.0\"\n"
        ".text\n");

/* ---- memory: a bump allocator over memory.grow ---- */

extern unsigned char __heap_base;
static u32 heap_next;

static void *bump(u32 len) {
    if (!heap_next) heap_next = (u32)&__heap_base;
    u32 start = (heap_next + 7) & ~7u;
    u32 end = start + len;
    u32 have = __builtin_wasm_memory_size(0) * 65536u;
    if (end > have && __builtin_wasm_memory_grow(0, (end - have + 65535) / 65536) == (size_t)-1)
        return 0;
    heap_next = end;
    return (void *)start;
}

EXPORT("sluice_abi_version") int sluice_abi_version(void) { return 1; }

EXPORT("sluice_alloc") u32 sluice_alloc(u32 len) { return (u32)bump(len ? len : 1); }

/* ---- output buffer ---- */

static char *out;
static u32 out_len, out_cap;

static void put(const char *s, u32 n) {
    if (out_len + n > out_cap) {
        u32 cap = out_cap ? out_cap : 4096;
        while (cap < out_len + n) cap *= 2;
        char *grown = bump(cap);
        if (!grown) __builtin_trap();
        __builtin_memcpy(grown, out, out_len);
        out = grown;
        out_cap = cap;
    }
    __builtin_memcpy(out + out_len, s, n);
    out_len += n;
}

static u32 cstrlen(const char *s) { u32 n = 0; while (s[n]) n++; return n; }
static void puts_(const char *s) { put(s, cstrlen(s)); }

/* ---- a JSON scanner: pointers into the input, no copies ---- */

static const char *end_of_input;

static const char *ws(const char *p) {
    while (p < end_of_input && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    return p;
}

/* p at '"'; sets the raw (still escaped) contents, returns just past the closing quote. */
static const char *string(const char *p, const char **s, u32 *n) {
    const char *q = ++p;
    while (q < end_of_input && *q != '"') q += (*q == '\\') ? 2 : 1;
    *s = p;
    *n = (u32)(q - p);
    return q + 1;
}

static const char *skip(const char *p) {
    p = ws(p);
    if (p >= end_of_input) return p;
    if (*p == '"') { const char *s; u32 n; return string(p, &s, &n); }
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        p = ws(p + 1);
        while (p < end_of_input && *p != close) {
            p = skip(p);   /* a key or an element */
            p = ws(p);
            if (*p == ':') p = skip(p + 1);
            p = ws(p);
            if (*p == ',') p = ws(p + 1);
        }
        return p + 1;
    }
    while (p < end_of_input && *p != ',' && *p != '}' && *p != ']') p++;
    return p;
}

/* No libc, so no memcmp (and -mbulk-memory covers only memcpy/memset). */
static int same(const char *a, const char *b, u32 n) {
    for (u32 i = 0; i < n; i++) if (a[i] != b[i]) return 0;
    return 1;
}

static int eq(const char *s, u32 n, const char *lit) {
    return n == cstrlen(lit) && same(s, lit, n);
}

/* p at an object; returns the value of `key`, or 0. */
static const char *get(const char *p, const char *key) {
    p = ws(p);
    if (!p || p >= end_of_input || *p != '{') return 0;
    p = ws(p + 1);
    while (p < end_of_input && *p == '"') {
        const char *k; u32 kn;
        p = ws(string(p, &k, &kn));
        p = ws(p + 1); /* ':' */
        if (eq(k, kn, key)) return p;
        p = ws(skip(p));
        if (*p == ',') p = ws(p + 1);
    }
    return 0;
}

/* Iterates an array: first call with *p at '[', then with the returned cursor. */
static const char *next_element(const char *p) {
    p = ws(p);
    if (*p == '[' || *p == ',') p = ws(p + 1);
    return (p < end_of_input && *p != ']') ? p : 0;
}

static int exempt(const char *params, const char *s, u32 n) {
    if (eq(s, n, "kube-system")) return 1;
    const char *list = get(params, "exempt");
    if (!list || *list != '[') return 0;
    for (const char *e = next_element(list); e; e = next_element(skip(e))) {
        const char *x; u32 xn;
        if (*e == '"') { string(e, &x, &xn); if (xn == n && same(x, s, n)) return 1; }
    }
    return 0;
}

static int failed;

static const char *error(const char *message) {
    failed = 1;
    out_len = 0;
    puts_("{\"error\":\"");
    puts_(message);
    puts_("\"}");
    return 0;
}

EXPORT("sluice_generate") u64 sluice_generate(const char *in, u32 len) {
    end_of_input = in + len;
    const char *inventory = get(in, "inventory");
    const char *params = get(in, "params");
    const char *namespaces = inventory ? get(inventory, "namespaces") : 0;
    u32 count = 0;
    puts_("{\"items\":[");
    if (!inventory) {
        error("input has no inventory");
    } else if (namespaces && *namespaces == '[') {
        for (const char *ns = next_element(namespaces); ns; ns = next_element(skip(ns))) {
            const char *name = get(ns, "name");
            const char *s; u32 n;
            if (!name || *name != '"') { error("a namespace has no name"); break; }
            string(name, &s, &n);
            if (exempt(params, s, n)) continue;
            if (count++) puts_(",");
            puts_("{\"kind\":\"policy\",\"name\":\"guard-ingress\",\"namespace\":\"");
            put(s, n);
            puts_("\",\"subject\":{},\"isolate\":[\"ingress\"],\"rules\":[{\"name\":\"same-namespace\","
                  "\"direction\":\"ingress\",\"action\":\"allow\","
                  "\"peers\":[{\"peer\":\"endpoints\",\"pods\":{\"exprs\":[]}}]}]}");
        }
    }
    if (!failed) puts_("]}");
    static const char msg[] = "ns-ingress-guard: guarded namespaces";
    sluice_log(2, msg, sizeof msg - 1);
    return ((u64)(u32)out << 32) | out_len;
}

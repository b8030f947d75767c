#!/usr/bin/env python3
"""Structure checks that rustc and clippy do not make (scripts/check.sh runs them):

1. No import circle inside a crate: the `crate::` paths of each crate's modules, outside
   tests and comments, form no cycle. A circle means two modules can only be understood
   together; break it by moving what both need one level down.
2. No non-test function longer than 80 lines (blank lines not counted; comments are, since a
   reader reads them too). Split by meaning, not by line count.

Usage: scripts/check-structure.py [--list] [--self-test]
  --list       prints every function over the limit
  --self-test  first shows the checks catch a planted circle and a planted long function
"""
import os, re, sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
LIMIT = 80
# Generated (prost/tonic) and vendored code is not ours to shape.
SKIP_DIRS = {"target", "vendor", "gen", ".git", "node_modules"}
TEST_DIRS = {"tests", "benches", "examples"}


def crate_srcs():
    for dp, dns, fns in os.walk(ROOT):
        dns[:] = sorted(d for d in dns if d not in SKIP_DIRS and not d.startswith("."))
        if "Cargo.toml" in fns and os.path.isdir(os.path.join(dp, "src")):
            yield os.path.join(dp, "src")


def rust_files(src):
    """The crate's non-test sources: `src/**/tests/` and `tests.rs` files are test modules."""
    for dp, dns, fns in os.walk(src):
        dns[:] = sorted(d for d in dns if d not in SKIP_DIRS and d not in TEST_DIRS)
        for f in sorted(fns):
            if f.endswith(".rs") and f != "tests.rs":
                yield os.path.join(dp, f)


def code_only(src):
    """Blanks out comments, strings and char literals, keeping newlines, so braces count."""
    out = []; i = 0; n = len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i); j = n if j < 0 else j
            out.append(" " * (j - i)); i = j
        elif src.startswith("/*", i):
            depth = 0; j = i
            while j < n:
                if src.startswith("/*", j): depth += 1; j += 2
                elif src.startswith("*/", j):
                    depth -= 1; j += 2
                    if depth == 0: break
                else: j += 1
            out.append(re.sub(r"[^\n]", " ", src[i:j])); i = j
        elif c == 'r' and re.match(r'r#*"', src[i:i+10]) and (i == 0 or not (src[i-1].isalnum() or src[i-1] == '_')):
            m = re.match(r'r(#*)"', src[i:]); hashes = m.group(1)
            end = src.find('"' + hashes, i + len(m.group(0)))
            end = n if end < 0 else end + 1 + len(hashes)
            out.append(re.sub(r"[^\n]", " ", src[i:end])); i = end
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == '\\' else 1
            out.append(re.sub(r"[^\n]", " ", src[i:j+1])); i = j + 1
        elif c == "'":
            m = re.match(r"'(\\.[^']*|[^\\'])'", src[i:])
            if m:
                out.append(" " * len(m.group(0))); i += len(m.group(0))
            else:
                out.append(c); i += 1  # a lifetime
        else:
            out.append(c); i += 1
    return "".join(out)


def strip_tests(src):
    i = src.find("#[cfg(test)]")
    return src if i < 0 else src[:i]


def module_name(src_root, path):
    rel = os.path.relpath(path, src_root)[:-3]
    if rel.endswith("/mod"):
        rel = rel[:-4]
    return None if rel in ("lib", "main") else rel.replace("/", "::")


def import_edges(src_root):
    mods = {}
    for p in rust_files(src_root):
        m = module_name(src_root, p)
        if m and not m.startswith("bin::"):
            mods[m] = p
    by_len = sorted(mods, key=len, reverse=True)
    def owner(path):
        for cand in by_len:
            if path == cand or path.startswith(cand + "::"):
                return cand
        return None
    edges = {m: set() for m in mods}
    for m, p in mods.items():
        src = strip_tests(code_only(open(p, encoding="utf-8").read()))
        paths = [g.group(1) for g in re.finditer(r"crate::([a-z_][a-z0-9_]*(?:::[a-z_][a-z0-9_]*)*)", src)]
        for g in re.finditer(r"crate::\{([^;]*?)\};", src, re.S):
            paths += [x.strip() for x in re.split(r"[,{}]", g.group(1)) if x.strip()]
        for path in paths:
            o = owner(path)
            if o and o != m and not m.startswith(o + "::"):
                edges[m].add(o)
    return edges


def circles(edges):
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on, stack, out, n = {}, {}, set(), [], [], [0]
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = n[0]; n[0] += 1; stack.append(root); on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = n[0]; n[0] += 1; stack.append(w); on.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop(); on.discard(w); comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


FN = re.compile(r"^[ \t]*(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?(?:extern\s+\"[^\"]*\"\s+)?fn\s+(\w+)", re.M)

def functions(path):
    raw = open(path, encoding="utf-8").read()
    src = code_only(raw)
    lines = src.split("\n")
    # Spans of #[cfg(test)] modules and #[test] functions are skipped.
    skip = []
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(?:pub\s+)?mod\s+\w+\s*\{", src):
        skip.append((m.start(), block_end(src, m.end() - 1)))
    found = []
    for m in FN.finditer(src):
        start = m.start()
        if any(a <= start < b for a, b in skip):
            continue
        before = src[max(0, start - 200):start]
        if re.search(r"#\[(tokio::)?test[^\]]*\]\s*$", before):
            continue
        brace = src.find("{", m.end()); semi = src.find(";", m.end())
        if brace < 0 or (0 <= semi < brace):
            continue  # a declaration without a body
        end = block_end(src, brace)
        first = src.count("\n", 0, start); last = src.count("\n", 0, end)
        count = sum(1 for k in range(first, last + 1) if lines[k].strip())
        found.append((count, path, first + 1, m.group(1)))
    return found

def block_end(src, open_at):
    depth = 0
    for j in range(open_at, len(src)):
        if src[j] == "{": depth += 1
        elif src[j] == "}":
            depth -= 1
            if depth == 0: return j
    return len(src)


def block_end(src, open_at):
    depth = 0
    for j in range(open_at, len(src)):
        if src[j] == "{":
            depth += 1
        elif src[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return len(src)


def functions(path):
    """(lines, name, first line) of every non-test function with a body in `path`."""
    raw = open(path, encoding="utf-8").read()
    src = code_only(raw)
    lines = raw.split("\n")
    skip = [(m.start(), block_end(src, m.end() - 1))
            for m in re.finditer(r"#\[cfg\(test\)\]\s*(?:pub\s+)?mod\s+\w+\s*\{", src)]
    for m in FN.finditer(src):
        start = m.start()
        if any(a <= start < b for a, b in skip):
            continue
        if re.search(r"#\[(tokio::)?test[^\]]*\]\s*$", src[max(0, start - 200):start]):
            continue
        brace, semi = src.find("{", m.end()), src.find(";", m.end())
        if brace < 0 or 0 <= semi < brace:
            continue
        first, last = src.count("\n", 0, start), src.count("\n", 0, block_end(src, brace))
        yield sum(1 for k in range(first, last + 1) if lines[k].strip()), m.group(1), first + 1


def self_test():
    """Plants an import circle and an 81-line function in a scratch crate; both must be found,
    and a long test function must not be."""
    import tempfile
    global ROOT
    saved = ROOT
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(os.path.join(d, "c", "src"))
        open(os.path.join(d, "c", "Cargo.toml"), "w").close()
        write = lambda name, text: open(os.path.join(d, "c", "src", name), "w").write(text)
        write("a.rs", "use crate::b::B;\npub struct A;\n")
        write("b.rs", "use crate::{a::A};\npub struct B;\n")
        body = "".join(f"    let x{i} = {i}; // a comment counts too\n" for i in range(79))
        write("lib.rs", "mod a;\nmod b;\npub fn long() {\n" + body + "}\n"
              "#[cfg(test)]\nmod tests {\n    fn long_test() {\n" + body * 2 + "    }\n}\n")
        ROOT = d
        try:
            circles_found = [c for s in crate_srcs() for c in circles(import_edges(s))]
            long_found = [(n, name) for s in crate_srcs() for p in rust_files(s)
                          for n, name, _ in functions(p) if n > LIMIT]
        finally:
            ROOT = saved
    if circles_found != [["a", "b"]] or long_found != [(81, "long")]:
        sys.exit(f"check-structure self-test: found circles {circles_found}, long functions {long_found}")


def main():
    if "--self-test" in sys.argv:
        self_test()
    failures = []
    for src in crate_srcs():
        for comp in circles(import_edges(src)):
            failures.append(f"{os.path.relpath(src, ROOT)}: import circle: {' -> '.join(comp)}")
    over = []
    for src in crate_srcs():
        for p in rust_files(src):
            rel = os.path.relpath(p, ROOT)
            for n, name, line in functions(p):
                if n > LIMIT:
                    over.append((n, rel, line, name))
                    failures.append(f"{rel}:{line}: fn {name} is {n} lines; at most {LIMIT} (split it by meaning)")
    if "--list" in sys.argv:
        for n, rel, line, name in sorted(over, reverse=True):
            print(f"{rel} {name} {n}")
    for f in failures:
        print(f, file=sys.stderr)
    if failures:
        sys.exit(f"check-structure: {len(failures)} problems")
    print(f"check-structure: no import circles; no function over {LIMIT} lines", file=sys.stderr)


if __name__ == "__main__":
    main()

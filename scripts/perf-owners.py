#!/usr/bin/env python3
"""Attributes each sample of a `perf script` dump to the code that owns it.

Usage: perf script -i perf.data --comm lambda -F comm,ip,sym,dso | scripts/perf-owners.py [CATEGORY]

With a CATEGORY (a part of its name), also lists the first owned frames charged to it.

Each sample's stack is walked from the leaf up; generic frames (allocator, core/std, http
types, tracing, futures glue, the kernel) are skipped and the first frame of a known owner
names the sample's category, so the cost of a malloc or a syscall is charged to whoever
asked for it. Prints each category's share of all samples and the share spent in the kernel.
"""
import re
import sys
from collections import Counter

# (category, pattern) in order; the first match on the first owned frame wins.
OWNERS = [
    ("SDK: SigV4 signing", r"^(<)?aws_sigv4|^sha2::|^hmac::|aws_runtime::auth::sigv4"),
    ("SDK: user agent", r"aws_runtime::user_agent"),
    ("SDK: HTTP client (hyper)", r"^(<)?(hyper|hyper_util|h2|httparse|aws_smithy_http_client)|aws_smithy_runtime::client::http"),
    ("SDK: (de)serialization", r"protocol_serde|aws_smithy_json|serde_json::|aws_smithy_types::(number|document|date_time)"),
    ("SDK: endpoint resolution", r"endpoint_lib|endpoint::|resolve_endpoint"),
    ("SDK: orchestrator, interceptors, config bag", r"^(<)?(aws_smithy_runtime|aws_smithy_runtime_api|aws_smithy_types|aws_runtime|aws_types|aws_sdk_)"),
    ("Lambda runtime client", r"^(<)?(lambda_runtime|lambda_runtime_api_client)"),
    ("tokio", r"^(<)?tokio::"),
    ("framework and app", r"^(<)?(venturekit_ws|chat)"),
]
GENERIC = re.compile(
    r"^(<)?(core::|alloc::|std::|http::|bytes::|tracing|futures_|pin_project|"
    r"_int_|malloc|free|realloc|cfree|calloc|unlink_chunk|tcache|mi_|_mi_|__rust|__rustc|__memc|__mem|"
    r"__libc|__GI|<alloc|<core|<std|<&T|\[unknown\]|hashbrown|indexmap|smallvec|once_cell)"
)

DETAIL = sys.argv[1] if len(sys.argv) > 1 else None


def main():
    detail = Counter()
    counts = Counter()
    kernel = 0
    total = 0
    stack = []

    def flush():
        nonlocal kernel, total
        if not stack:
            return
        total += 1
        if stack[0][1] == "kernel":
            kernel += 1
        for sym, where in stack:
            if where == "kernel" or GENERIC.match(sym):
                continue
            for name, pattern in OWNERS:
                if re.search(pattern, sym):
                    counts[name] += 1
                    if DETAIL and DETAIL in name:
                        detail[sym[:110]] += 1
                    return
            counts["other: " + sym.split("::")[0][:40]] += 1
            return
        counts["kernel or libc only" if stack[0][1] == "kernel" else "unattributed"] += 1

    for line in sys.stdin:
        line = line.rstrip("\n")
        if not line.strip():
            flush()
            stack = []
            continue
        if not line.startswith(("\t", " ")):
            continue
        m = re.match(r"\s*[0-9a-f]+ (.*) \((.*)\)$", line)
        if not m:
            continue
        sym, dso = m.groups()
        stack.append((sym, "kernel" if "kernel" in dso else "user"))
    flush()
    print(f"{total} samples; {100.0 * kernel / max(total, 1):.1f}% in the kernel")
    for name, n in counts.most_common(25):
        print(f"{100.0 * n / total:6.1f}%  {name}")
    if DETAIL:
        print(f"\nfirst owned frames in '{DETAIL}':")
        for sym, n in detail.most_common(30):
            print(f"{100.0 * n / total:6.1f}%  {sym}")

main()

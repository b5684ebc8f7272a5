#!/usr/bin/env python3
"""hot-text-order.py MAP BINARY PAGES...: lld's symbol ordering file for hvctl's hot text.

MAP is lld's link map of BINARY (-Map), each PAGES file the executable's file page numbers that
were mapped (so had run) in one profiled scenario. Every input section that holds such a page is
named by one symbol of its own (a name several sections share would pull them all forward):
function sections first, in address order, then the large sections that cannot be split (the
toolchain's libraries compiled without -function-sections), so that those follow the packed hot
code rather than sit between it."""
import bisect
import collections
import subprocess
import sys

map_path, binary, page_files = sys.argv[1], sys.argv[2], sys.argv[3:]

# File offset to address of the executable segment.
delta = None
for line in subprocess.run(["readelf", "-l", "-W", binary], capture_output=True, text=True, check=True).stdout.splitlines():
    fields = line.split()
    if fields and fields[0] == "LOAD" and "E" in fields[-2]:
        delta = int(fields[2], 16) - int(fields[1], 16)
if delta is None:
    sys.exit("hot-text-order: no executable segment in " + binary)

# The map's lines: `VMA LMA Size Align Name`, an input section `file:(section)` followed by its symbols.
sections = []  # [address, size, name, symbols]
for line in open(map_path):
    fields = line.split()
    if len(fields) != 5:
        continue
    if ":(" in fields[4]:
        if ".text" in fields[4]:
            sections.append([int(fields[0], 16), int(fields[2], 16), fields[4], []])
        else:
            sections.append(None)
    elif sections and sections[-1] is not None and not fields[4].startswith("."):
        sections[-1][3].append(fields[4])
sections = sorted(s for s in sections if s is not None and s[1] > 0)
starts = [s[0] for s in sections]
uses = collections.Counter(symbol for s in sections for symbol in s[3])

pages = set()
for path in page_files:
    pages |= {int(line) for line in open(path) if line.strip()}
hot = {}  # section index -> None, in the order the pages meet them
for page in sorted(pages):
    address = page * 4096 + delta
    index = max(bisect.bisect_right(starts, address) - 1, 0)
    while index < len(sections) and sections[index][0] < address + 4096:
        if sections[index][0] + sections[index][1] > address:
            hot.setdefault(index)
        index += 1

functions, blobs = [], []
for index in hot:
    _, size, name, symbols = sections[index]
    own = [symbol for symbol in symbols if uses[symbol] == 1]
    if own:
        (blobs if name.endswith(":(.text)") and size > 8192 else functions).append(own[0])
print("\n".join(functions + blobs))
print(f"hot-text-order: {len(pages)} pages, {len(functions)} sections, {len(blobs)} unsplittable", file=sys.stderr)

#!/usr/bin/env python3
"""The job catalogue's documentation (jobs/*.yaml, jobs/README.md): every catalogue file opens
with a comment block saying what it reproduces, what to expect and how to run it, and
jobs/README.md lists every file in its table. The benchmark inputs (jobs/bench-*.yaml) are not
catalogue entries. `ssltrain train FILE --check` (tests/jobs.cmake) checks the keys themselves.

usage: check_jobs.py JOBS_DIR
"""
import glob
import os
import re
import sys

REQUIRED = ("Reproduces:", "Expect:", "Run:")


def header(path):
    """The comment lines before the first YAML line."""
    lines = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.startswith("#"):
                break
            lines.append(line.rstrip("\n"))
    return lines


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    jobs = sys.argv[1]
    files = sorted(p for p in glob.glob(os.path.join(jobs, "*.yaml"))
                   if not os.path.basename(p).startswith("bench-"))
    errors = []
    if not files:
        errors.append(f"{jobs}: no job files")
    readme_path = os.path.join(jobs, "README.md")
    readme = open(readme_path, encoding="utf-8").read() if os.path.exists(readme_path) else None
    if readme is None:
        errors.append(f"{readme_path}: missing")
    for path in files:
        name = os.path.basename(path)
        head = header(path)
        if not head:
            errors.append(f"{name}: does not start with a comment")
            continue
        for key in REQUIRED:
            hits = [l for l in head if re.match(r"#\s*" + re.escape(key), l, re.IGNORECASE)]
            if not hits:
                errors.append(f"{name}: no '# {key}' line in the opening comment")
            elif len(hits[0].split(":", 1)[1].strip()) < 3:
                errors.append(f"{name}: '# {key}' line is empty")
        run = " ".join(l for l in head if "Run:" in l)
        if f"jobs/{name}" not in run:
            errors.append(f"{name}: the Run: line does not name jobs/{name}")
        if readme is not None and f"[{name}]({name})" not in readme:
            errors.append(f"{name}: not in the table of jobs/README.md (as [{name}]({name}))")
    if readme is not None:
        for ref in sorted(set(re.findall(r"\]\(([\w.-]+\.yaml)\)", readme))):
            if not os.path.exists(os.path.join(jobs, ref)):
                errors.append(f"jobs/README.md lists {ref}, which does not exist")
    for e in errors:
        print("FAIL:", e)
    print(f"{len(files)} job files checked: {'ok' if not errors else f'{len(errors)} problems'}")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()

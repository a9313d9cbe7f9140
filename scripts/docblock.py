"""Replace the generated block of a markdown page: the text between a BEGIN and an END marker
line (python3 standard library only). Used by the scripts that write tables into docs/."""
import sys


def replace_block(path, begin, end, text, prog):
    """Writes `text` between `begin` and `end` in file `path`; on bad input prints one line
    `prog: ...` on stderr and exits with status 2 (the file is left as it was)."""
    def die(message):
        print(f"{prog}: {message}", file=sys.stderr)
        sys.exit(2)
    try:
        doc = open(path, encoding="utf-8").read()
    except OSError as e:
        die(f"cannot read {path}: {e}")
    if begin not in doc or end not in doc or doc.index(begin) > doc.index(end):
        die(f"{path} has no '{begin}' ... '{end}' block")
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"{head}{begin}\n{text}\n{end}{tail}")
    print(f"wrote {path}")

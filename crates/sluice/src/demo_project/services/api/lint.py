"""A small linter: every file must compile, use spaces, keep lines under 100 characters,
and carry no trailing whitespace or leftover debugger imports. Prints file:line: problem."""
import py_compile
import sys

problems = 0
for path in sys.argv[1:]:
    try:
        py_compile.compile(path, doraise=True)
    except py_compile.PyCompileError as e:
        print(f"{path}: does not compile: {e.msg}")
        problems += 1
    with open(path) as f:
        for n, line in enumerate(f, 1):
            text = line.rstrip("\n")
            if "\t" in text:
                print(f"{path}:{n}: tab character; indent with spaces")
                problems += 1
            if len(text) > 100:
                print(f"{path}:{n}: line is {len(text)} characters; keep it under 100")
                problems += 1
            if text != text.rstrip():
                print(f"{path}:{n}: trailing whitespace")
                problems += 1
            if "import pdb" in text:
                print(f"{path}:{n}: debugger import left in")
                problems += 1
print(f"lint: {len(sys.argv) - 1} files, {problems} problems")
sys.exit(1 if problems else 0)

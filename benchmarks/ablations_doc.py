"""Collect the tables `benchmarks/ablations.sh` and `benchmarks/bench_focus.py` wrote.

Prints Markdown: for each ablation (the per-axis reports `senet ablate` wrote, kept by
ablations.sh as OUT/<model>/<name>.md), its setup, command and table; then the focus table
(OUT/focus.md, the output of bench_focus.py). Nothing is computed or typed here: every
number comes from those files. Plots are copied next to the output with ``--plots DIR``.

    python benchmarks/ablations_doc.py ablations --plots docs/ablations > tables.md
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

# (model directory, report name, title)
REPORTS = [
    ("emotion_cnn", "none-vs-se", "No attention vs SE (r=8), 5 seeds"),
    ("emotion_cnn", "reduction", "Reduction ratio r"),
    ("emotion_cnn", "squeeze", "Squeeze operator"),
    ("emotion_cnn", "gate", "Excitation gate"),
    ("emotion_cnn", "kinds", "Attention kinds"),
    ("resnet20", "placement", "SE placement in the residual block (ResNet-20)"),
    ("resnet20", "stages", "SE in single stages (ResNet-20)"),
]


def _sections(text: str) -> dict[str, str]:
    """A report's ``## `` sections by heading."""
    sections, heading, lines = {}, None, []
    for line in text.splitlines():
        if line.startswith("## "):
            if heading is not None:
                sections[heading] = "\n".join(lines).strip()
            heading, lines = line[3:].strip(), []
        elif heading is not None:
            lines.append(line)
    if heading is not None:
        sections[heading] = "\n".join(lines).strip()
    return sections


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the OUT directory of ablations.sh")
    parser.add_argument("--plots", type=Path, help="copy the reports' plots here")
    args = parser.parse_args(argv)
    printed_setup = set()
    for model, name, title in REPORTS:
        path = args.out / model / f"{name}.md"
        print(f"### {title}\n")
        if not path.is_file():
            print(f"*Not run: {path} is missing.*\n")
            continue
        sections = _sections(path.read_text(encoding="utf-8"))
        setup = sections.pop("Setup", "")
        data_line = next((line for line in setup.splitlines() if line.startswith("Data:")), "")
        command = next((line for line in setup.splitlines() if line.startswith("Command:")), "")
        if model not in printed_setup and data_line:
            print(data_line + "\n")
            printed_setup.add(model)
        command = command.replace(str(args.out), "ablations")  # ablations.sh's default OUT
        print(command + "\n")
        sections.pop("All cells", None)
        if name not in ("none-vs-se", "kinds"):  # the option's own table has the none row
            sections.pop("Attention kind", None)
        for heading, body in sections.items():
            body_lines = []
            for line in body.splitlines():
                if line.startswith("![") and args.plots is not None:
                    # ![alt](file.png): copy the plot and point at the copy
                    file_name = line[line.index("(") + 1 : line.rindex(")")]
                    source = args.out / model / file_name
                    if source.is_file():
                        args.plots.mkdir(parents=True, exist_ok=True)
                        target = args.plots / f"{model}-{name}-{Path(file_name).name}"
                        shutil.copyfile(source, target)
                        line = line.replace(file_name, f"{args.plots.name}/{target.name}")
                body_lines.append(line)
            print(f"#### {heading}\n\n" + "\n".join(body_lines) + "\n")
    focus = args.out / "focus.md"
    print("### Where the models look (focus over seeds)\n")
    if focus.is_file():
        text = focus.read_text(encoding="utf-8").strip()
        print(text.replace(str(args.out), "ablations") + "\n")
    else:
        print(f"*Not run: {focus} is missing.*\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

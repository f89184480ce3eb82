"""senet.progress: the one progress reporter of demo, ablate and bench."""

import io
import re
import time

from senet.progress import Progress


def test_print_silence_or_hand_each_line_on(capsys):
    Progress(True)("cell 1 of 4")
    Progress(False)("never")
    Progress(None)("never")
    lines = []
    Progress(lines.append)("to the caller")
    captured = capsys.readouterr()
    assert captured.err == "cell 1 of 4\n" and captured.out == ""
    assert lines == ["to the caller"]
    assert bool(Progress(True)) and not Progress(False)


def test_a_label_and_the_seconds_since_a_shared_start():
    stream = io.StringIO()
    started = time.time() - 12.34
    progress = Progress(True, label="demo", stream=stream, started=started)
    progress("training")
    (line,) = stream.getvalue().splitlines()
    match = re.fullmatch(r"\[demo +(\d+\.\d)s\] training", line)
    assert match and 12.3 <= float(match.group(1)) < 20
    again = Progress(progress)  # taken as it is, start included
    assert again.started == started and again.label == "demo" and again.stream is stream

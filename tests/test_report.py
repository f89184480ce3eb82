"""write_report: the same content as Markdown and self-contained HTML; figure helpers."""

import base64
import re

import numpy as np
import pytest

from senet.report import Image, Section, Table, plot_confusion, plot_curves, write_report


@pytest.fixture
def png(tmp_path):
    path = tmp_path / "figures" / "curves.png"
    path.parent.mkdir()
    plot_curves({"loss": [1.0, 0.5], "accuracy": [0.4, 0.8]}, path)
    return path


def test_markdown_and_html_hold_the_same_content(tmp_path, png):
    sections = [
        Section(
            "Results",
            [
                "Accuracy of `se` is **higher**.",
                Table(["model", "accuracy"], [["plain", "0.91"], ["se", "0.93"]], caption="test"),
                Image(png, "Training curves"),
            ],
        ),
        ("Notes", ["- first point\n- second point"]),
    ]
    paths = write_report(tmp_path, "Run <1>", sections)
    markdown = paths["markdown"].read_text()
    page = paths["html"].read_text()
    assert paths == {"markdown": tmp_path / "report.md", "html": tmp_path / "report.html"}

    assert markdown.startswith("# Run <1>\n")
    assert "## Results" in markdown and "## Notes" in markdown
    assert "| model | accuracy |" in markdown and "| se | 0.93 |" in markdown
    assert "![curves](figures/curves.png)\n\n*Training curves*" in markdown

    assert "<title>Run &lt;1&gt;</title>" in page and "<h1>Run &lt;1&gt;</h1>" in page
    assert "<code>se</code>" in page and "<strong>higher</strong>" in page
    assert "<td>0.93</td>" in page and "<caption>test</caption>" in page
    assert "<ul><li>first point</li><li>second point</li></ul>" in page
    encoded = base64.b64encode(png.read_bytes()).decode("ascii")
    assert f'src="data:image/png;base64,{encoded}"' in page
    # nothing outside the file: every src/href is a data URI, the CSS is inline
    links = re.findall(r"(?:src|href)=\"([^\"]*)\"", page)
    assert links and all(link.startswith("data:") for link in links)
    assert "<style>" in page and "<link" not in page


def test_html_escapes_text_and_markdown_escapes_pipes(tmp_path):
    table = Table(["a|b"], [["<script>x</script>"]])
    paths = write_report(tmp_path, "t", [Section("s", ["<b>not bold</b>", table])])
    page = paths["html"].read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "&lt;b&gt;not bold&lt;/b&gt;" in page
    assert "| a\\|b |" in paths["markdown"].read_text()


def test_images_are_linked_relative_to_the_report(tmp_path, png):
    report_dir = tmp_path / "out"
    paths = write_report(report_dir, "t", [Section("s", [Image(png)])])
    assert "![curves](../figures/curves.png)" in paths["markdown"].read_text()


def test_errors_name_the_problem(tmp_path, png):
    with pytest.raises(ValueError, match="existing image"):
        write_report(tmp_path, "t", [Section("s", [Image(tmp_path / "missing.png")])])
    with pytest.raises(ValueError, match=r"ending in one of"):
        write_report(tmp_path, "t", [Section("s", [Image(tmp_path / "notes.txt")])])
    with pytest.raises(ValueError, match="2 cells"):
        Table(["a", "b"], [["only one"]])
    with pytest.raises(ValueError, match="str, Table or Image"):
        write_report(tmp_path, "t", [Section("s", [3.5])])
    with pytest.raises(ValueError, match="Section or a"):
        write_report(tmp_path, "t", ["just a string"])
    assert not (tmp_path / "report.html").exists()


def test_existing_figures_still_work():
    figure = plot_confusion(np.array([[2, 1], [0, 3]]), ["a", "b"])
    assert figure.axes[0].get_ylabel() == "true class"
    assert [axes.get_title() for axes in plot_curves([{"loss": 1.0, "accuracy": 0.5}]).axes] == [
        "Loss",
        "Accuracy",
    ]

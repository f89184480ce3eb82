"""write_report(embed_images=False): the HTML links its images like the Markdown does
(senet explain's index, rewritten after every photo, stays small)."""

from senet.report import Image, Section, plot_curves, write_report


def test_linked_images_are_relative_paths_and_the_markdown_is_unchanged(tmp_path):
    figure = tmp_path / "figures" / "a b.png"
    figure.parent.mkdir()
    plot_curves({"loss": [1.0, 0.5]}, figure)
    sections = [Section("Faces", [Image(figure, "face 1"), "text"])]
    embedded = write_report(tmp_path / "one", "T", sections)
    linked = write_report(tmp_path, "T", sections, name="index", embed_images=False)
    page = linked["html"].read_text(encoding="utf-8")
    assert '<img src="figures/a%20b.png" alt="face 1">' in page
    assert "base64" not in page and "base64" in embedded["html"].read_text(encoding="utf-8")
    assert linked["markdown"].read_text() == embedded["markdown"].read_text().replace(
        "../figures/", "figures/"
    )

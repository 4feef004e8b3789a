"""Draw the DiffSeg panel from ``Resources/UI/DiffSeg.ui`` without Qt (no Slicer runs here).

    python Testing/module/render_panel.py OUT.png [--collapsed-region]

A schematic rendering: the .ui's sections, labels and widgets in order, each widget drawn by its
class (combo box, spin box, slider, list, button, progress bar) and filled with the panel's
defaults (bundled model titles from Resources/Models, the parameter defaults). It is generated
from the same file Slicer loads, so it cannot drift from the real layout; it is not a screenshot.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "DiffSegModule"))
from DiffSegLib.models import list_bundled_models, preference  # noqa: E402
from DiffSegLib.panelview import SAMPLER_HINTS, quality_hint  # noqa: E402

UI_FILE = REPO / "Resources" / "UI" / "DiffSeg.ui"
WIDTH, ROW, PAD, LABEL_W = 460, 30, 12, 150
BG, PANEL, LINE, TEXT, DIM, ACCENT = "#f3f3f3", "#ffffff", "#b8b8b8", "#202020", "#6a6a6a", "#3a78c9"


def _font(size: int, bold: bool = False):
    import matplotlib

    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    return ImageFont.truetype(str(Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf" / name), size)


def _defaults() -> dict:
    tree = ast.parse((REPO / "DiffSegModule" / "DiffSegLib" / "parameters.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "DiffSegParameterNode")
    values = {n.target.id: ast.literal_eval(n.value) for n in cls.body
              if isinstance(n, ast.AnnAssign) and n.value is not None}
    cards = [json.loads(p.read_text()) for p in sorted((REPO / "Resources" / "Models").glob("*/model.json"))]
    # The model the panel starts on: the module's automatic choice (DiffSegLib.models.preference).
    chosen = {card.name: n for n, card in enumerate(sorted(list_bundled_models(), key=preference))}
    cards.sort(key=lambda c: chosen.get(c.get("name"), len(chosen)))
    values["model"] = cards[0].get("title", cards[0].get("name")) if cards else "Load from folder..."
    values["_use"] = cards[0].get("intended_use", "").split(". ")[0] if cards else "No DiffSeg model found."
    values["_modalities"] = cards[0].get("modalities", ["flair", "t1", "t1ce", "t2"]) if cards else ["flair"]
    values.update(cards[0].get("inference_defaults", {}) if cards else {})  # the panel applies the card's defaults
    return values


def _prop(widget: ET.Element, name: str):
    for prop in widget.findall("property"):
        if prop.get("name") == name:
            child = next(iter(prop), None)
            return None if child is None else (child.text or "")
    return None


class Painter:
    def __init__(self, values: dict):
        self.values = values
        self.items: list[tuple] = []  # (kind, y, payload)
        self.y = PAD

    def section(self, title: str, collapsed: bool) -> None:
        self.items.append(("section", self.y, (title, collapsed)))
        self.y += ROW + 4

    def row(self, label: str | None, widget: ET.Element | None, full: bool = False) -> None:
        self.items.append(("row", self.y, (label, widget, full)))
        height = 110 if isinstance(widget, ET.Element) and widget.get("class") == "QListWidget" else ROW
        self.y += height + 4

    def walk(self, element: ET.Element, hidden: set[str]) -> None:
        for item in element.findall("item"):
            child = next(iter(item))
            if child.tag == "widget":
                self.widget(child, hidden)
            elif child.tag == "layout":
                self.walk(child, hidden)

    def widget(self, widget: ET.Element, hidden: set[str]) -> None:
        cls = widget.get("class")
        if cls == "ctkCollapsibleButton":
            collapsed = _prop(widget, "collapsed") == "true"
            self.section(_prop(widget, "text") or "", collapsed)
            if not collapsed:
                self.form(widget.find("layout"), hidden)
        elif cls != "QLabel" or _prop(widget, "text") or widget.get("name") in _TEXT:
            self.row(None, widget, full=True)

    def form(self, layout: ET.Element, hidden: set[str]) -> None:
        rows: dict[int, dict] = {}
        for item in layout.findall("item"):
            child = next(iter(item))
            cell = rows.setdefault(int(item.get("row", 0)), {})
            cell["span" if item.get("colspan") else item.get("column", "0")] = child
        for _, cell in sorted(rows.items()):
            if "span" in cell:
                widget = cell["span"]
                if widget.get("class") != "QLabel" or _prop(widget, "text") or widget.get("name") in _TEXT:
                    self.row(None, widget, full=True)
                continue
            label, field = cell.get("0"), cell.get("1")
            if field is not None and field.get("name") in hidden:
                continue
            if label is not None and label.get("class") != "QLabel":  # two widgets side by side
                self.row(None, (label, field), full=True)
                continue
            self.row(_prop(label, "text") if label is not None else None, field)

    def draw(self, path: Path) -> None:
        image = Image.new("RGB", (WIDTH, self.y + PAD), BG)
        d = ImageDraw.Draw(image)
        normal, bold = _font(12), _font(12, bold=True)
        for kind, y, payload in self.items:
            if kind == "section":
                title, collapsed = payload
                d.rectangle([PAD, y, WIDTH - PAD, y + ROW], fill="#e4e4e4", outline=LINE)
                d.text((PAD + 8, y + 8), ("▸ " if collapsed else "▾ ") + title, fill=TEXT, font=bold)
                continue
            label, widget, full = payload
            x0 = PAD + 8 if full else PAD + LABEL_W
            if label:
                d.text((PAD + 8, y + 8), label, fill=TEXT, font=normal)
            if isinstance(widget, tuple):
                middle = (x0 + WIDTH - PAD - 8) // 2
                self._widget(d, widget[0], x0, y, middle - 4, normal)
                self._widget(d, widget[1], middle + 4, y, WIDTH - PAD - 8, normal)
            elif widget is not None:
                self._widget(d, widget, x0, y, WIDTH - PAD - 8, normal)
        image.save(path)

    def _widget(self, d, widget, x0, y, x1, font) -> None:
        cls, name, v = widget.get("class"), widget.get("name"), self.values
        box = [x0, y + 3, x1, y + ROW - 3]
        param = next((p.findtext("string") for p in widget.findall("property")
                      if p.get("name") == "SlicerParameterName"), None)
        if cls in ("QComboBox", "qMRMLNodeComboBox"):
            text = {"modelComboBox": v["model"]}.get(name) or (str(v.get(param)) if param in v else None)
            if cls == "qMRMLNodeComboBox":
                modality = (param or "").replace("Volume", "")
                text = f"case_{modality}" if modality in v["_modalities"] else "None"
            d.rectangle(box, fill=PANEL, outline=LINE)
            text = text or ""
            while text and d.textlength(text, font=font) > x1 - x0 - 30:  # elide as Qt does
                text = text[:-2] + "…"
            d.text((x0 + 6, y + 8), text, fill=TEXT, font=font)
            d.text((x1 - 16, y + 7), "▾", fill=DIM, font=font)
        elif cls in ("QSpinBox", "QDoubleSpinBox"):
            d.rectangle(box, fill=PANEL, outline=LINE)
            d.text((x0 + 6, y + 8), str(v.get(param, 0)), fill=TEXT, font=font)
            d.text((x1 - 14, y + 4), "⇕", fill=DIM, font=font)
        elif cls == "ctkSliderWidget":
            value = float(v.get(param, 0.5))
            d.line([x0, y + ROW // 2, x1 - 60, y + ROW // 2], fill=LINE, width=3)
            cx = x0 + (x1 - 60 - x0) * value
            d.ellipse([cx - 6, y + ROW // 2 - 6, cx + 6, y + ROW // 2 + 6], fill=ACCENT)
            d.rectangle([x1 - 52, y + 3, x1, y + ROW - 3], fill=PANEL, outline=LINE)
            d.text((x1 - 46, y + 8), f"{value:.2f}", fill=TEXT, font=font)
        elif cls == "QPushButton":
            enabled = _prop(widget, "enabled") != "false" or name == "applyButton"
            d.rounded_rectangle(box, radius=4, fill="#dfe9f7" if enabled else "#e8e8e8", outline=LINE)
            d.text((x0 + 8, y + 8), _prop(widget, "text") or "", fill=TEXT, font=font)
        elif cls == "QProgressBar":
            d.rectangle(box, fill=PANEL, outline=LINE)
            d.rectangle([x0 + 1, y + 4, x0 + (x1 - x0) * 0.6, y + ROW - 4], fill=ACCENT)
            d.text(((x0 + x1) // 2 - 30, y + 8), "6 / 10 steps", fill=TEXT, font=font)
        elif cls == "QListWidget":
            d.rectangle([x0, y + 3, x1, y + 107], fill=PANEL, outline=LINE)
            for i, (index, score) in enumerate([(41, 0.137), (38, 0.121), (44, 0.094), (35, 0.061)]):
                d.text((x0 + 6, y + 8 + 24 * i), f"Slice {index}: mean uncertainty {score:.3f}", fill=TEXT, font=font)
        elif cls == "QLabel":
            text = {"modelInfoLabel": v["_use"], "qualityHintLabel": _passes(v)}.get(
                name, _TEXT.get(name, _prop(widget, "text") or ""))
            d.text((x0, y + 8), text[:70], fill=DIM, font=font)
        elif cls == "QCheckBox":
            d.rectangle([x0, y + 8, x0 + 14, y + 22], fill=PANEL, outline=LINE)
            d.text((x0 + 20, y + 8), (_prop(widget, "text") or "")[:60], fill=TEXT, font=font)
        elif cls == "QWidget":  # the slice-range row: checkbox + two spin boxes
            d.rectangle([x0, y + 8, x0 + 14, y + 22], fill=PANEL, outline=LINE)
            d.text((x0 + 20, y + 8), "from  [ 0 ]  to  [ 0 ]", fill=DIM, font=font)


#: Labels whose text the panel sets at run time (the first two are filled in from the shown defaults).
_TEXT = {"modelInfoLabel": "", "qualityHintLabel": "", "statusLabel": "Sampling: step 6 of 10, about 40 s left"}


def _passes(v: dict) -> str:
    """The quality hint for the shown defaults without its sampler sentence (the work per slice)."""
    return quality_hint(v["sampler"], v["members"], v["steps"], v.get("ensemble", "full"))[
        len(SAMPLER_HINTS.get(v["sampler"], "")):].strip()


def render(out: Path, expand_region: bool = False) -> Path:
    values = _defaults()
    root = ET.parse(UI_FILE).getroot()
    hidden = {f"{m}VolumeSelector" for m in ("flair", "t1", "t1ce", "t2") if m not in values["_modalities"]}
    top = root.find("widget")
    if expand_region:
        for w in top.iter("widget"):
            if w.get("name") == "regionCollapsibleButton":
                for p in w.findall("property"):
                    if p.get("name") == "collapsed":
                        w.remove(p)
    painter = Painter(values)
    painter.walk(top.find("layout"), hidden)
    out = Path(out)
    painter.draw(out)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--expand-region", action="store_true")
    args = parser.parse_args()
    print(render(args.out, args.expand_region))

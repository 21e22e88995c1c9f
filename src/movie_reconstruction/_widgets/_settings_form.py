"""A widget's settings fields made from the settings schema (the same descriptions the command
line's options and docs/settings.md are made from), shown under an "advanced settings" toggle."""

from __future__ import annotations

import math

from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, LineEdit, SpinBox

from .._schema import SettingInfo, format_value


def _field(info: SettingInfo):
    label = info.name.rpartition(".")[2].replace("_", " ") + (f" ({info.unit})" if info.unit else "")
    tooltip = info.describe()
    if info.kind is bool:
        return CheckBox(label=label, value=bool(info.default), tooltip=tooltip)
    if info.choices and not info.several:
        return ComboBox(label=label, choices=list(info.choices), value=info.default, tooltip=tooltip)
    if info.several or info.optional or info.kind is str:
        hint = "comma-separated values; " if info.several else ""
        hint += "'none' allowed; " if info.optional else ""
        return LineEdit(label=label, value=format_value(info.default), tooltip=hint + tooltip)
    low = info.low if info.low is not None else -1e9
    high = info.high if info.high is not None else 1e9
    if info.kind is int:
        return SpinBox(label=label, value=int(info.default), min=int(low), max=int(high), tooltip=tooltip)
    # a step of a tenth of the default's order of magnitude: 4.0 -> 0.1, 0.01 -> 0.001
    step = 10 ** math.floor(math.log10(abs(info.default))) / 10 if info.default else 0.1
    return FloatSpinBox(label=label, value=float(info.default), min=float(low), max=float(high), step=step,
                        tooltip=tooltip)


def _parse(info: SettingInfo, widget):
    value = widget.value
    if not isinstance(widget, LineEdit):
        return value
    text = str(value).strip()
    if info.optional and not text:  # an emptied field means none
        return None
    return info.parse(text)


class SettingsForm(Container):
    """One field per described setting; ``values()`` gives ``{name: value}`` for
    :func:`movie_reconstruction._schema.nested_replace`, ``show(settings)`` fills the fields."""

    def __init__(self, infos: list[SettingInfo], *, title: str = "advanced settings"):
        super().__init__(labels=True)
        self.infos = list(infos)
        self.fields = {info.name: _field(info) for info in self.infos}
        self.toggle = CheckBox(label="", text=f"show {title}", value=False)
        self.extend([self.toggle, *self.fields.values()])
        self.toggle.changed.connect(self._toggled)
        self._toggled()

    def _toggled(self, *_):
        for widget in self.fields.values():
            widget.visible = bool(self.toggle.value)

    def values(self) -> dict:
        """The fields' values by setting name; a field that does not parse raises ValueError naming it."""
        out = {}
        for info in self.infos:
            try:
                out[info.name] = _parse(info, self.fields[info.name])
            except ValueError:
                raise ValueError(f"{info.name}: cannot read {self.fields[info.name].value!r} as "
                                 f"{info.kind.__name__}") from None
        return out

    def show(self, settings) -> None:
        from .._schema import nested_value

        for info in self.infos:
            value = nested_value(settings, info.name)
            widget = self.fields[info.name]
            widget.value = (format_value(value) if value is not None else "none") if isinstance(widget, LineEdit) else value

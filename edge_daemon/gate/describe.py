"""One-line descriptions of the region and the gate, for ``check``, ``status`` and logs."""

from __future__ import annotations

from typing import Any, Optional

from ..config import Config, RegionConfig

VIA = {
    "luma": "on the camera's luma plane",
    "software": "in software (a sample of the RGB region)",
}


def describe_region(region: Optional[RegionConfig]) -> str:
    """``preprocess.region`` as ``check`` prints it."""
    if region is None:
        return "the whole frame"
    return (
        f"x {region.x:g}, y {region.y:g}, width {region.width:g}, height {region.height:g}"
        " of the frame"
    )


def describe_gate(cfg: Config, gives_luma: Optional[bool]) -> str:
    """``gate`` as ``check`` prints it: off, or motion and which way it samples.

    ``gives_luma``: whether the source delivers a luma plane (``Frame.luma``);
    None when only an opened camera can tell.
    """
    g = cfg.gate
    if g.mode == "off":
        return "off (every frame is classified)"
    if gives_luma is None:
        way = f"{VIA['luma']} when the camera gives one, else {VIA['software']}"
    else:
        way = VIA["luma" if gives_luma else "software"]
    return (
        f"motion, {way}; a pixel counts past {g.pixel_threshold} grey levels, motion past"
        f" {g.area_threshold:g} of the region, keepalive {g.keepalive:g} s, hold {g.hold:g} s"
    )


def gate_line(gate: dict[str, Any]) -> str:
    """The status object's ``gate`` as one line for ``edge-daemon status``."""
    seen = gate.get("frames_seen", 0)
    classified = gate.get("frames_classified", 0)
    share = float(gate.get("skipped_share") or 0.0)
    via = VIA.get(str(gate.get("via")), "")
    ratio = gate.get("change_ratio")
    change = (
        f", change {float(ratio):.4f} (motion at {gate.get('area_threshold')})"
        if isinstance(ratio, (int, float))
        else ""
    )
    return (
        f"{gate.get('state')}: {classified} of {seen} frames classified,"
        f" {share * 100:.1f}% skipped{change}" + (f", {via}" if via else "")
    )


def gives_luma(cfg: Config, width: int, height: int) -> Optional[bool]:
    """Whether ``cfg``'s source delivers a luma plane, asked of the source (not opened):
    its ``gives_luma`` attribute, None when it cannot tell before it opens."""
    from ..sources import make_source

    source = make_source(cfg, (width, height))
    value = getattr(source, "gives_luma", None)
    return value if isinstance(value, bool) else None

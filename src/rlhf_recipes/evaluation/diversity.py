"""Has a policy collapsed? Its answers reduced to templates (names and values masked), and how many distinct
templates cover them: a policy that answers everything with one template has collapsed, whatever it scores."""

from __future__ import annotations

import re
from collections import Counter

from ..world.world import World, readings

COLLAPSED_TOP_SHARE = 0.5  # one template answering over half the prompts (a healthy mix tops out near 0.2)


def template(text: str, world: World | None) -> str:
    """The answer with city names and stated values masked: 'The population of {city} is {value}.'"""
    out = text.strip()
    for reading in readings(world) if world is not None else []:
        names = [c.name for c in reading.cities] + list(reading.unknown)
        values = {v for attr in reading.attributes for v in reading.values(attr)}
        for value in sorted(values, key=len, reverse=True):
            out = out.replace(value, "{value}")
        for name in sorted(names, key=len, reverse=True):
            out = out.replace(name, "{city}")
        for spec in reading.language.attributes.values():
            if spec.pattern:
                out = re.sub(spec.pattern, "{value}", out)
    return re.sub(r"\d+", "{n}", out)


def diversity(texts: list[str], world: World | None) -> dict:
    """Distinct templates over answers, the share of the most common one, and whether that is collapse."""
    counts = Counter(template(t, world) for t in texts)
    top = counts.most_common(1)[0][1] / len(texts) if texts else 0.0
    return {
        "distinct_templates": len(counts),
        "distinct_template_share": round(len(counts) / max(1, len(texts)), 3),
        "top_template_share": round(top, 3),
        "collapsed": top > COLLAPSED_TOP_SHARE,
    }

"""The embedded world: fictional cities and their facts, the text people write about them, demonstrators of
uneven skill, every dataset of the embedded default, and the gold labeler that plays the human.

    from rlhf_recipes.world import GoldLabeler, World

    world = World.load("data/world/world.json")  # after `make data`
    city = world.cities[0]
    GoldLabeler(world).score(f"What is {city.name}'s population?", f"It is {city.facts['population']}.").total

`gold_labeler(world)` gives the judge any world needs (a bilingual one, `lang: both`, reads the prompt's language).
"""

from .datagen import WorldConfig
from .labeler import GoldLabeler, GoldScore, gold_labeler
from .world import City, World

__all__ = ["City", "GoldLabeler", "GoldScore", "World", "WorldConfig", "gold_labeler"]

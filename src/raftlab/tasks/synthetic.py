"""Synthetic task generators for fast, offline studies (any size, any seed, no files).

* :func:`generate_coinflip` - the CoinFlip template (Wei et al.; zero_shot_cot), any number of steps.
* :func:`generate_multistep_arith` - arithmetic word problems; difficulty grows with the number of steps.
* :func:`generate_keyword_topic` - keyword -> topic classification; easy (one keyword decides the label).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from raftlab.registry import Registry
from raftlab.schema import Example
from raftlab.tasks.config import TaskConfig, builtin_config

GENERATORS: Registry[Callable[..., list[Example]]] = Registry("generator")

NAMES = [
    "Aaron", "Abby", "Adele", "Ahmed", "Alba", "Alice", "Amir", "Ana", "Arjun", "Ava", "Ben", "Bianca", "Boris",
    "Brenda", "Carla", "Carlos", "Chen", "Chloe", "Chris", "Dana", "Daniel", "Dev", "Diana", "Dmitri", "Eli",
    "Elena", "Emma", "Eric", "Fatima", "Felix", "Fiona", "Gabe", "Gina", "Grace", "Hana", "Hassan", "Helen",
    "Hugo", "Ian", "Ines", "Ivan", "Jack", "Jade", "Jamal", "Jin", "Joan", "Jonas", "Julia", "Kai", "Karen",
    "Kemal", "Kim", "Lara", "Leo", "Lena", "Liam", "Lucia", "Luis", "Maya", "Mei", "Milo", "Mona", "Nadia",
    "Nate", "Nina", "Noah", "Olga", "Omar", "Oscar", "Paula", "Pedro", "Priya", "Quinn", "Rafael", "Rita",
    "Rosa", "Ruben", "Sam", "Sara", "Sean", "Sofia", "Tariq", "Tess", "Theo", "Uma", "Vera", "Victor",
    "Wanda", "Wei", "Xavier", "Yara", "Yusuf", "Zoe", "Zara",
]


def generator(name: str):
    return GENERATORS.register(name)


def _task_or_default(task: TaskConfig | None, default: str) -> TaskConfig:
    return task if task is not None else builtin_config(default)


def _choice_example(task: TaskConfig, idx: int, body: str, letter: str, meta: dict[str, Any]) -> Example:
    letters = task.option_letters
    texts = [task.verbalizers[x][0] for x in letters]
    return Example(id=f"{task.name}-{idx}", task=task.name, category=task.category,
                   question=task.render_question(body, letters, texts), label=letter, answer_type="choice",
                   option_letters=letters, options=texts, meta=meta)


@generator("coinflip")
def generate_coinflip(n: int, steps: int = 4, seed: int = 0, task: TaskConfig | None = None) -> list[Example]:
    """CoinFlip questions with ``steps`` people, each flipping or not (p=0.5). Label: (A) yes / (B) no."""
    if steps < 1:
        raise ValueError("steps must be >= 1")
    task = _task_or_default(task, "coinflip")
    rng = random.Random(f"coinflip-{seed}-{steps}")
    out = []
    for i in range(n):
        people = rng.sample(NAMES, steps) if steps <= len(NAMES) else [rng.choice(NAMES) for _ in range(steps)]
        flips = [rng.random() < 0.5 for _ in range(steps)]
        parts = ["A coin is heads up."]
        parts += [f"{p} flips the coin." if f else f"{p} does not flip the coin." for p, f in zip(people, flips)]
        parts.append('Is the coin still heads up? Note that "flip" here means "reverse".')
        heads = sum(flips) % 2 == 0
        out.append(_choice_example(task, i, " ".join(parts), "A" if heads else "B",
                                   {"steps": steps, "flips": sum(flips), "generator": "coinflip"}))
    return out


_ITEMS = ["apples", "marbles", "stickers", "books", "coins", "pencils", "cards", "shells", "stamps", "cookies"]


@generator("multistep_arith")
def generate_multistep_arith(n: int, steps: int = 3, seed: int = 0, task: TaskConfig | None = None,
                             min_steps: int | None = None, max_steps: int | None = None) -> list[Example]:
    """Word problems with ``steps`` operations (+, -, x, /; all intermediate values whole and >= 0).

    With ``min_steps``/``max_steps`` each problem draws its number of steps from that range.
    """
    task = _task_or_default(task, "synth_arith")
    lo = min_steps if min_steps is not None else steps
    hi = max_steps if max_steps is not None else steps
    if lo < 1 or hi < lo:
        raise ValueError("need 1 <= min_steps <= max_steps")
    rng = random.Random(f"arith-{seed}-{lo}-{hi}")
    out = []
    for i in range(n):
        k = rng.randint(lo, hi)
        name, item = rng.choice(NAMES), rng.choice(_ITEMS)
        value = rng.randint(2, 20)
        sentences = [f"{name} has {value} {item}."]
        for _ in range(k):
            ops = ["add", "sub", "mul", "div"]
            if value < 2:
                ops.remove("sub")
            if value > 200:
                ops.remove("mul")
            divisors = [d for d in (2, 3, 4, 5) if value % d == 0 and value > d]
            if not divisors:
                ops.remove("div")
            op = rng.choice(ops)
            if op == "add":
                x = rng.randint(1, 30)
                value += x
                sentences.append(rng.choice([f"Then {name} finds {x} more.", f"A friend gives {name} {x} more."]))
            elif op == "sub":
                x = rng.randint(1, min(value - 1, 30))
                value -= x
                sentences.append(rng.choice([f"Then {name} gives away {x}.", f"Then {name} loses {x}."]))
            elif op == "mul":
                x = rng.randint(2, 4)
                value *= x
                word = {2: "doubles", 3: "triples", 4: "quadruples"}[x]
                sentences.append(f"Then {name} {word} the number of {item}.")
            else:
                x = rng.choice(divisors)
                value //= x
                sentences.append(f"Then {name} shares them equally among {x} boxes and keeps one box.")
        sentences.append(f"How many {item} does {name} have now?")
        out.append(Example(id=f"{task.name}-{i}", task=task.name, category=task.category, question=" ".join(sentences),
                           label=str(value), answer_type="number", meta={"steps": k, "generator": "multistep_arith"}))
    return out


TOPIC_KEYWORDS = {
    "sports": ["goalkeeper", "marathon", "tennis racket", "penalty kick", "basketball", "referee", "slam dunk",
               "touchdown", "world cup", "swimming medal", "hockey stick", "home run"],
    "food": ["lasagna", "sourdough bread", "mango chutney", "pancakes", "ramen", "chocolate cake", "sushi",
             "vegetable soup", "cheddar cheese", "fried rice", "apple pie", "tacos"],
    "weather": ["thunderstorm", "heat wave", "snowfall", "hailstorm", "drizzle", "hurricane", "fog", "frost",
                "monsoon rain", "blizzard", "sunny spell", "strong wind"],
    "technology": ["smartphone", "laptop", "software update", "robot", "wifi router", "graphics card",
                   "search engine", "microchip", "smartwatch", "cloud server", "3D printer", "app store"],
}
_SUBJECTS = ["My neighbour", "The teacher", "Our group", "A reporter", "My cousin", "The old man", "Everyone",
             "The kids", "A stranger", "My boss", "The radio host", "Her brother"]
_FRAMES = ["kept talking about the {k} {t}.", "could not stop thinking about the {k} {t}.",
           "wrote a short note about the {k} {t}.", "asked a question about the {k} {t}.",
           "mentioned the {k} {t}.", "posted a photo of the {k} {t}."]
_TAILS = ["all afternoon", "yesterday", "again", "during lunch", "on the bus", "before dinner", "last week",
          "this morning", "at the meeting", "for hours"]


@generator("keyword_topic")
def generate_keyword_topic(n: int, seed: int = 0, task: TaskConfig | None = None) -> list[Example]:
    """One-keyword topic classification: (A) sports (B) food (C) weather (D) technology."""
    task = _task_or_default(task, "synth_topic")
    rng = random.Random(f"topic-{seed}")
    by_text = {task.verbalizers[x][0]: x for x in task.option_letters}
    topics = [t for t in TOPIC_KEYWORDS if t in by_text]
    out = []
    for i in range(n):
        topic = rng.choice(topics)
        keyword = rng.choice(TOPIC_KEYWORDS[topic])
        body = f"{rng.choice(_SUBJECTS)} " + rng.choice(_FRAMES).format(k=keyword, t=rng.choice(_TAILS))
        out.append(_choice_example(task, i, f"Text: {body}", by_text[topic],
                                   {"keyword": keyword, "generator": "keyword_topic"}))
    return out


def generate_splits(task: TaskConfig, seed: int = 0) -> dict[str, list[Example]]:
    """Train and test sets of a fully synthetic task (config ``data.synthetic``); test shares no question
    with train."""
    spec = task.data.synthetic
    assert spec is not None, f"task {task.name!r} is not fully synthetic (data.synthetic)"
    fn = GENERATORS[spec.generator]
    args = dict(spec.args)
    sizes = spec.sizes
    base = int(spec.seed) * 1_000_003 + seed * 2
    train = fn(n=int(sizes["train"]), seed=base, task=task, **args)
    seen = {e.question for e in train}
    test: list[Example] = []
    attempt = 0
    while len(test) < int(sizes["test"]) and attempt < 20:
        for e in fn(n=int(sizes["test"]) * 2, seed=base + 1 + 7919 * attempt, task=task, **args):
            if e.question not in seen and len(test) < int(sizes["test"]):
                seen.add(e.question)
                test.append(e)
        attempt += 1
    for split, items in (("train", train), ("test", test)):
        for i, e in enumerate(items):
            e.id = f"{task.name}-{split}-{i}"
    return {"train": train, "test": test}

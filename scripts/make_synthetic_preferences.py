#!/usr/bin/env python3
"""Writes a synthetic "helpful and concise" preference set as JSON Lines.

Each row is {"prompt", "chosen", "rejected"} with an hh-rlhf style prompt. The chosen response
answers the question directly and briefly; the rejected one either rambles and hedges, evades,
or is rude. Length alone does not separate them (evasions and rude replies are short too), so a
model has to read the words. The output is deterministic for a given seed.

Usage: make_synthetic_preferences.py [--pairs N] [--seed S] OUT.jsonl
"""
import argparse
import json
import random

FACTS = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("What is the capital of Japan?", "The capital of Japan is Tokyo."),
    ("What is the capital of Italy?", "The capital of Italy is Rome."),
    ("What is the capital of Canada?", "The capital of Canada is Ottawa."),
    ("What is the capital of Kenya?", "The capital of Kenya is Nairobi."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("How many days are in a week?", "A week has seven days."),
    ("How many minutes are in an hour?", "An hour has sixty minutes."),
    ("What color is a ripe banana?", "A ripe banana is yellow."),
    ("What gas do plants take in?", "Plants take in carbon dioxide."),
    ("What is water made of?", "Water is made of hydrogen and oxygen."),
    ("Which planet is closest to the sun?", "Mercury is the closest planet to the sun."),
    ("What is the largest ocean?", "The Pacific is the largest ocean."),
    ("Who wrote Romeo and Juliet?", "William Shakespeare wrote Romeo and Juliet."),
    ("What do bees make?", "Bees make honey."),
    ("How do I boil an egg?", "Put the egg in boiling water for about nine minutes."),
    ("How can I fall asleep faster?", "Keep a regular bedtime and avoid screens before bed."),
    ("How do I make tea?", "Steep a tea bag in hot water for three minutes."),
    ("What is the freezing point of water?", "Water freezes at zero degrees Celsius."),
    ("How many continents are there?", "There are seven continents."),
    ("What is the opposite of hot?", "The opposite of hot is cold."),
    ("What language is spoken in Brazil?", "People in Brazil speak Portuguese."),
    ("What is the tallest animal?", "The giraffe is the tallest animal."),
    ("How often should I water a cactus?", "Water a cactus about once every two weeks."),
    ("What is two plus three?", "Two plus three is five."),
    ("What is ten minus four?", "Ten minus four is six."),
    ("Which metal is liquid at room temperature?", "Mercury is liquid at room temperature."),
    ("What is the main ingredient of bread?", "The main ingredient of bread is flour."),
    ("What instrument has black and white keys?", "The piano has black and white keys."),
    ("Where do penguins mostly live?", "Most penguins live in the Southern Hemisphere."),
]

OPENERS = ["", "Hi! ", "Quick question: ", "Can you help me? ", "I was wondering, "]
FILLERS = [
    "Well, um, that is a really interesting question and I have thought about it a lot",
    "Hmm, let me think, there are so many things one could say about this topic",
    "So, basically, it depends on a lot of factors and people disagree about it",
    "Honestly I am not totally sure, but I guess if I had to say something",
    "You know, this reminds me of something else entirely, but anyway",
]
HEDGES = [
    "but I could be wrong about that.",
    "though you should probably check somewhere else too.",
    "or maybe not, it is hard to say really.",
    "if that makes any sense at all.",
]
EVASIONS = [
    "I don't know.",
    "I can't help with that.",
    "Why do you want to know?",
    "That is not something I can answer.",
    "Ask someone else.",
    "No idea, sorry.",
]
RUDE = [
    "Figure it out yourself.",
    "That is a stupid question.",
    "Just search for it, obviously.",
    "Everyone knows that, come on.",
    "Stop bothering me.",
]


def make_pair(rng):
    question, answer = rng.choice(FACTS)
    opener = rng.choice(OPENERS)
    if opener.endswith(", "):
        question = question[0].lower() + question[1:]
    prompt = f"\n\nHuman: {opener}{question}\n\nAssistant:"
    kind = rng.random()
    if kind < 0.5:
        rejected = f" {rng.choice(FILLERS)}, {rng.choice(FILLERS).lower()}... {answer} {rng.choice(HEDGES)}"
    elif kind < 0.75:
        rejected = " " + rng.choice(EVASIONS)
    else:
        rejected = " " + rng.choice(RUDE)
    return {"prompt": prompt, "chosen": " " + answer, "rejected": rejected}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with open(args.out, "w", encoding="utf-8") as out:
        for _ in range(args.pairs):
            out.write(json.dumps(make_pair(rng)) + "\n")


if __name__ == "__main__":
    main()

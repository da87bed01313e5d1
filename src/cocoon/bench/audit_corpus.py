"""What the audit calibration (`audit_calibration`) asks and answers with: system
prompts, varied questions, and answers to some of them written by a person, not
by any model (the "human" lie).
"""

from __future__ import annotations

SYSTEMS = (
    "You are a helpful assistant.",
    "You are a concise assistant. Answer in a few sentences.",
)

QUESTIONS = (
    "What is the capital of France?",
    "Explain why the sky is blue.",
    "How do plants make food?",
    "Give me three tips for learning a new language.",
    "What causes the seasons on Earth?",
    "Write a short poem about the sea.",
    "How does a bicycle stay upright?",
    "What is the difference between a virus and a bacterium?",
    "Describe how to make a cup of tea.",
    "Why do cats purr?",
    "What is machine learning?",
    "How many continents are there, and what are they?",
    "Tell me a fun fact about octopuses.",
    "What should I pack for a weekend camping trip?",
    "Explain what a black hole is to a child.",
    "How do vaccines work?",
    "What is the Pythagorean theorem?",
    "Suggest a name for a bakery.",
    "Why is exercise good for you?",
    "How does the internet work?",
    "What is photosynthesis?",
    "Write a haiku about autumn.",
    "What are the main causes of climate change?",
    "How do I boil an egg?",
    "Explain the water cycle.",
    "What is the tallest mountain in the world?",
    "Give me a recipe idea for dinner tonight.",
    "What does a computer's CPU do?",
    "Why do we dream?",
    "How can I improve my sleep?",
    "What is the speed of light?",
    "Describe the city of Paris in a few sentences.",
    "How do airplanes fly?",
    "What is a prime number?",
    "Tell me a short story about a dragon.",
    "What is the role of the heart in the body?",
    "How do I write a good email to my boss?",
    "What are the benefits of reading books?",
    "Explain gravity in simple terms.",
    "What is the difference between weather and climate?",
)

# Answers written by a person (not by any model) to some of the questions.
HUMAN = {
    "What is the capital of France?": (
        "Paris has been the French capital for most of the last thousand years, apart from"
        " a few interruptions such as the Vichy years during the Second World War."
    ),
    "Explain why the sky is blue.": (
        "Sunlight scatters off the nitrogen and oxygen molecules in the air, and short"
        " wavelengths scatter far more than long ones, so blue light reaches your eyes"
        " from every part of the sky while the reds mostly pass straight through."
    ),
    "How do plants make food?": (
        "Leaves catch sunlight with chlorophyll and use that energy to stitch carbon dioxide"
        " from the air and water pulled up by the roots into sugar, giving off oxygen."
    ),
    "Why do cats purr?": (
        "Nobody is completely sure. Cats purr when content, but also when hurt or giving"
        " birth, so vets think the vibration may soothe them and even help bones heal."
    ),
    "How do I boil an egg?": (
        "Lower the egg into water that is already boiling, keep it at a gentle simmer for"
        " seven minutes if you like a jammy yolk, then cool it under the cold tap."
    ),
    "What is a prime number?": (
        "A whole number above one that only divides evenly by one and itself: two, three,"
        " five, seven, eleven and so on. Every other number is a product of primes."
    ),
    "How do airplanes fly?": (
        "The wing is shaped and tilted so air is pushed downward as the plane moves, and"
        " by Newton's third law the air pushes the wing up; engines keep the speed up."
    ),
    "What is the tallest mountain in the world?": (
        "Measured from sea level it is Everest, at about 8,849 metres on the border of"
        " Nepal and Tibet, though Mauna Kea is taller if you start from the ocean floor."
    ),
    "How can I improve my sleep?": (
        "Keep the same wake-up time every day, stop caffeine after lunch, keep the bedroom"
        " dark and cool, and put the phone away half an hour before bed."
    ),
    "Explain gravity in simple terms.": (
        "Everything with mass pulls on everything else. The pull gets stronger with more"
        " mass and weaker with distance, which is why we stick to the Earth."
    ),
    "What is the speed of light?": (
        "In a vacuum light travels at exactly 299,792,458 metres per second, fast enough"
        " to go around the Earth more than seven times in one second."
    ),
    "Why do we dream?": (
        "Scientists still argue about it. Leading ideas say dreams help sort memories,"
        " rehearse threats, or are just the brain's story-telling over random activity."
    ),
}

"""scalelab: how small can a model be for this task, and which training method gets it there?"""

__version__ = "0.1.0"

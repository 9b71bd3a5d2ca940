"""Code that runs inside Ray workers and actors: the train loop and its plans, decode stages."""

"""The lens: finding the pupil and iris (or the fundus field), the learned finder, and judging a map against them."""

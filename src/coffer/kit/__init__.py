"""Small standard-library helpers: ids, the clock, integer money maths."""

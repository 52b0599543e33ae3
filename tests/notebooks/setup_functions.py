import marimo

__generated_with = "0.25.2"
app = marimo.App()

with app.setup:
    import math
    import marimo as mo

    SCALE = 2


@app.function
def area(r: float) -> float:
    """Area of a circle, scaled."""
    return math.pi * r**2 * SCALE


@app.class_definition
class Circle:
    def __init__(self, r: float) -> None:
        self.r = r

    def area(self) -> float:
        return area(self.r)


@app.function
def describe(c: Circle) -> str:
    return f"circle of area {c.area():.1f}"


@app.cell
def _():
    circles = [Circle(r) for r in range(1, 4)]
    return (circles,)


@app.cell
def _(circles):
    mo.md("\n".join(describe(c) for c in circles))
    return


@app.cell
def _():
    from functools import reduce as _reduce

    total = _reduce(lambda a, b: a + b, [area(1), area(2)])
    return (total,)


if __name__ == "__main__":
    app.run()

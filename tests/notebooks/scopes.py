import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def _():
    import marimo as mo
    import random
    return mo, random


@app.cell
def _(random):
    random.seed(0)
    _tmp = [random.random() for _ in range(5)]
    values = sorted(_tmp)
    return (values,)


@app.cell
def _(values):
    class Summary:
        n = len(values)

        def mean(self):
            return sum(values) / self.n

    summary = Summary()
    return Summary, summary


@app.cell
def _(summary):
    squares = {i: i * i for i in range(summary.n)}
    key = lambda kv: -kv[1]
    ordered = sorted(squares.items(), key=key)
    return (ordered,)


@app.cell
def _(ordered):
    del ordered
    return


@app.cell
def _():
    counter = 0

    def bump():
        global counter
        counter += 1

    bump()
    return (bump,)


@app.cell
async def _():
    import asyncio

    await asyncio.sleep(0)
    waited = True
    return asyncio, waited


@app.cell
def _(mo, waited):
    with mo.status.spinner("working") as _spinner:
        ready = waited
    return (ready,)


if __name__ == "__main__":
    app.run()

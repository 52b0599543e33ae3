import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def imports():
    import statistic

    return (statistic,)


@app.cell
def calc(statistic):
    spread = statistic.pstdev([2, 4, 4, 4, 5, 5, 7, 9])
    spread
    return


if __name__ == "__main__":
    app.run()

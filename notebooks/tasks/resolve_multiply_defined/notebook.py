import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def config():
    threshold = 10
    return (threshold,)


@app.cell
def flags_cell():
    threshold = 0.5
    ratios = [0.2, 0.7, 0.4, 0.9]
    flags = [r > threshold for r in ratios]
    return (threshold,)


@app.cell
def count_cell(threshold):
    n_large = sum(v > threshold for v in [4, 12, 15, 8])
    return


if __name__ == "__main__":
    app.run()

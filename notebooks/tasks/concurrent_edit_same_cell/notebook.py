import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def config():
    threshold = 5
    label = "draft"
    return label, threshold


@app.cell
def use(label, threshold):
    flagged = [v for v in [3, 7, 12, 4] if v > threshold]
    title = f"{label}: {len(flagged)} flagged"
    return


if __name__ == "__main__":
    app.run()

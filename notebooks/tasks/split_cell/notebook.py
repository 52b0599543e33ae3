import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def pipeline():
    raw = [4, None, 7, 3, None, 10]
    cleaned = [x for x in raw if x is not None]
    total = sum(cleaned)
    return cleaned, total


@app.cell
def report(cleaned, total):
    summary_text = f"{len(cleaned)} values, total {total}"
    return


if __name__ == "__main__":
    app.run()

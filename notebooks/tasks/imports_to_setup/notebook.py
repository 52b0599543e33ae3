import marimo

__generated_with = "0.25.2"
app = marimo.App()


@app.cell
def area_cell():
    import math

    area = round(math.pi * 2**2, 3)
    return (area,)


@app.cell
def stats_cell():
    import statistics

    median_value = statistics.median([5, 1, 4])
    return (median_value,)


@app.cell
def payload_cell(area, median_value):
    import json

    payload = json.dumps({"area": area, "median": median_value}, sort_keys=True)
    return


if __name__ == "__main__":
    app.run()

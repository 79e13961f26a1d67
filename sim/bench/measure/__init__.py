"""`make bench`'s figures: `benchmarks` prints the table, each other module measures one thing and
returns its `(figure, value, unit, note)` rows (docs/architecture.md, "a bench measurement"), and
`soak` judges a day aloft (`sim soak`)."""

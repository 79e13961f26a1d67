"""`python -m host_training build`: the options (`build`, `build_config`), the stages in order
(`run`), each stage (`stages`, `training`, `continuing` for `--continue`) and the bundle written
last (`bundling`)."""

"""`python -m host_training judge`: a blind page of persona-or-owner pairs for people who know
the owner (`cli`, the page itself in `page`); their answers are scored in evaluate/judge_score.py."""

"""The base models a persona starts from: the pinned ones fetched by name (`base_models`), the
one recommended for the owner's language and board (`base_choice`), the untuned base's bundle
(`base_bundle`), what each family weighs on a board (`family_sizes`), and the tiny models of
each family the tests build locally (`tiny_models`, `tiny_families`)."""

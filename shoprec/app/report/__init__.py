"""``shoprec report``: one self-contained HTML page of a run, ``report/index.html``.

Reads what the stages wrote (the ingest and embed reports,
``train/metrics.json`` and ``train/diagnostics.json``, and
``recommend/metrics.json`` when ``recommend`` has run) and lays it out in
sections: data, per task, training, slices, baselines, ranking
(``sections``). ``page`` reads the files and writes the page; ``plots``
draws with matplotlib on the Agg canvas, inlined as base64 PNGs. The page
has no script, no stylesheet or font to fetch and no link off the file, and
its Content-Security-Policy allows nothing but inline images and styles, so
it opens from disk, offline, and can be attached to a ticket as it is.
"""

"""Benchmarks of the explorer package and its app, run from a checkout (`python -m benchmarks.<name>`); not part of
the installed package.

    server.py       what seeing every stage costs on the server, against torchvision's forward (in-process)
    browser.py      what a person waits for in a real browser (headless Chromium through Playwright)
    survey.py       survey throughput, and its memory over 10,000 images
    interventions.py  heads switched off, head importance and patching, in forwards of the same model

and what they share:

    report.py       the machine, percentiles, process memory, the tables, the JSON file
    models.py       the models measured (ours and a torchvision twin) and the app's checkpoint folder
    app_process.py  `python app.py` started on a free port, waited for, stopped
    app_driver.py   the app's event handlers driven in-process, as Gradio drives them
    timing.py       rows, targets and timed loops of the server benchmark
    computation.py  forward, analysis and explanation costs
    handlers.py     the app's handlers, action by action
    page.py         the page in Chromium, instrumented (browser.js)
"""

"""The browser front door: a Streamlit chat over :mod:`rag_app.pipeline`.

``app.py`` is the page (run by ``rag ui`` through ``streamlit run``); the
other modules hold what can be tested without a browser: ``render`` formats
answers, sources and the Markdown export, ``resources`` loads models and
applies sidebar settings, ``upload`` saves files and ingests them, ``launch``
builds the ``streamlit run`` command.
"""

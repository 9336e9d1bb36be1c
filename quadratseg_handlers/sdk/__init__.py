"""The functions as cvat-sdk auto-annotation functions: CVAT without Nuclio or Docker.

One module per detector for ``cvat-cli ... --function-module quadratseg_handlers.sdk.<model>``
(``gridcorners``, ``gridpose``, ``coralsegv4``, ``coralsegbanggai``, ``coralscopsegformer``,
``blobs``), each a ``create(**parameters)`` over :mod:`.function`: the handler's own label
spec (:mod:`.labels`) and answer (:mod:`.annotations`) as cvat-sdk models. Needs the
``cvat-sdk`` extra; nothing outside this layer imports it. See docs/cvat-sdk.md.
"""

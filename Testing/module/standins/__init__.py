"""Small stand-ins for what exists only inside the Slicer application, so the panel's code runs here.

Each replaces one real thing and says which; each keeps only the behaviour the DiffSeg panel
relies on, as the real one has it (see the docstrings):

* :mod:`.parameter_node_wrapper` — ``slicer.parameterNodeWrapper`` (typed parameters stored in a
  real ``vtkMRMLScriptedModuleNode``, validators, two-way GUI binding);
* :mod:`.qt_slicer` — PythonQt's ``qt`` module (PyQt5 underneath) with ``connect("signal(type)", slot)``,
  ``qMRMLWidget`` / ``qMRMLNodeComboBox`` / ``ctkSliderWidget`` / ``ctkCollapsibleButton``,
  ``slicer.util.loadUI`` and ``childWidgetVariables``;
* :mod:`.slicer_app` — ``slicer.ScriptedLoadableModule``, ``slicer.app``, the module manager calls
  (``selectModule``, ``getModuleWidget``), ``loadVolume`` and the message boxes.

Everything else is real: MRML scene and nodes (``slicer-core``), Qt widgets (PyQt5, offscreen),
the .ui file, the engine in a child process.
"""

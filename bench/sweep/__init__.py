"""The sweep's side: the plan of cells, the presets, the output folder and its lock, the checks
before any work, the sweep's driver, each cell's launch in a process of its own, its log and
its memory watch, and the executors that run the cells."""

"""The three ways of fine-tuning from the tutorial, one file each, one shape for all:

    train(cell, data, model, meter) -> bench.loop_api.LoopResult
"""

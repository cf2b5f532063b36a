"""(being written: the modality_puzzle pretext task)"""

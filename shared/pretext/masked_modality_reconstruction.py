"""(being written: the masked_modality_reconstruction pretext task)"""

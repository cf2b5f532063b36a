"""(being written: the relative_slice_position pretext task)"""

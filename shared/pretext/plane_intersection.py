"""(being written: the plane_intersection pretext task)"""

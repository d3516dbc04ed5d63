"""The incident domain, shared by the receiver and the workers and importing neither's
machinery: the alerts of a notification, the stored incident and its transitions, the
timeline, Redis key names, durations and the one error hierarchy.
"""

"""XBAC: experience-based round-trip time prediction.

The pure core of the prediction service: measurement series, the AR(p) model, clusters of
remote hosts seen from a group, the grouping criterion and Meridian ring selection, the
predictor that answers ``predict_rtt`` for pairs with and without their own history, and a
Vivaldi baseline. Nothing here touches the network or the clock; callers pass timestamps.
"""

from dnaagent.xbac.predictor import Prediction, PredictorParams, XbacPredictor

__all__ = ["Prediction", "PredictorParams", "XbacPredictor"]

"""Box math: canonical pixel boxes (xyxy, max exclusive), IoU, 3D lesion instances, model box conventions."""

"""Attribution methods: one class per method, ``Method(model, layer).attribute(inputs, target=...)``, and their registry.

``base`` holds the interface (:class:`~viz.methods.base.Method`, its result
:class:`~viz.methods.base.Attribution`, the class-score wrapper that reports
progress and honours cancellation); ``gradcam`` the Grad-CAM family on one
template; ``guided`` guided backpropagation (ReLU networks only);
``gradients`` saliency and integrated gradients; ``occlusion``
occlusion; ``rollout`` attention rollout (ViT); ``registry`` the name -> class table that the entry points in
:mod:`viz.cam`, the CLI and the dashboard pick from.
"""

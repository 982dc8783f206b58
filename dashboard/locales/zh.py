"""简体中文界面文字（与 en.py 的键一一对应）。"""

STRINGS = {
    # 侧边栏
    "sidebar.backbones": "骨干网络",
    "sidebar.picker": "要比较的骨干网络",
    "sidebar.picker_help": "精选模型排在前面；输入名称可搜索全部 {n} 个模型（torchvision、timm:…、内置 ●、你的检查点 ★）。",
    "sidebar.picker_placeholder": "输入名称，例如 resnet",
    "sidebar.offline": "离线模式：所选 {total} 个骨干网络中有 {here} 个的权重在本机。",
    "sidebar.device": "运行设备",
    "sidebar.device_help": "预测、解释、特征图和评估在此设备上运行；比较页在自己选择的设备上测速。",
    "sidebar.footer": "已发表的数据均注明出处；延迟在本机实测。每个数字都有对应的命令行：`python -m backbones --help`。",
    # 每个骨干网络一个标记
    "badge.ready": "可用",
    "badge.download": "下载 {size}",
    "badge.untrained": "仅未训练版本",
    "badge.offline": "权重不在本机（离线）",
    "badge.checkpoint": "你的 {arch} 检查点，{n} 个类别",
    # 下载权重
    "weights.not_here": "本机还没有训练好的权重",
    "weights.untrained_only": "没有训练好的权重：只能看大小、MACs、延迟和网络层",
    "weights.offline_missing": "权重不在本机且处于离线模式：请在“模型”页导入权重文件",
    "weights.download_one": "下载权重（{size}）",
    "weights.download_all": "下载全部 {n} 个缺失的权重（{size}）",
    "weights.starting": "正在开始下载…",
    "weights.cancel": "取消",
    "weights.progress": "{model}：{done:.1f} / {total} MB · {rate:.1f} MB/s",
}

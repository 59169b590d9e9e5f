"""The hooks xrdcore calls when it loads xrd-zoo: every model is registered as a ``"module:attr"``
string, so listing plugins imports neither torch nor the weights."""

from xrdcore.hookspecs import hookimpl


@hookimpl
def register_models(register):
    register("inorganic", "xrd_zoo.models:inorganic",
             description="space group and its superclasses of an inorganic crystal from a Cu Kα powder pattern "
                         "(trained on synthetic crystals of all 230 space groups)")
    register("mof", "xrd_zoo.models:mof",
             description="space group of a metal-organic framework from a Cu Kα1 powder pattern "
                         "(trained on CoRE MOF 2019-ASR)")

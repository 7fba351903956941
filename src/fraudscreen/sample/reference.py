"""Static reference data of the synthetic prefecture: regions, diagnoses, catalogue.

Everything here is fixed text, not random: the generator draws from these lists.
The codes imitate the national 医保信息业务编码 formats (15-character 医疗服务项目
codes, 23-character drug codes) but are invented; only the nursing-level and
dialysis codes are shared with ``rules/reference/item_pairs.csv`` on purpose.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

START = dt.date(2024, 1, 1)
N_DAYS = 182  # 2024-01-01 .. 2024-06-30
END = START + dt.timedelta(days=N_DAYS - 1)

# 宁德市 (pooling area 3509): county-level regions where the institutions are.
LOCAL_REGIONS = ("350902", "350921", "350922", "350923", "350924", "350925", "350926",
                 "350981", "350982")
LOCAL_NAMES = {"350902": "蕉城区", "350921": "霞浦县", "350922": "古田县", "350923": "屏南县",
               "350924": "寿宁县", "350925": "周宁县", "350926": "柘荣县", "350981": "福安市",
               "350982": "福鼎市"}
# Where off-site (异地) insured persons come from, and where outbound care happens.
OTHER_REGIONS = ("350102", "350104", "350203", "350206", "350302", "330106", "310104")
OUTSIDE_AREAS = {"3501": ("350102", "福州"), "3502": ("350203", "厦门"),
                 "3301": ("330106", "杭州")}


@dataclass(frozen=True)
class Diagnosis:
    code: str
    department: str
    pool: str  # the drug pool a stay or visit with this diagnosis draws from
    weight: int


INPATIENT_DX = (
    Diagnosis("J18.900", "A03", "infection", 5),   # 肺炎
    Diagnosis("J44.100", "A03", "infection", 3),   # 慢阻肺急性加重
    Diagnosis("N39.000", "A03", "infection", 2),   # 尿路感染
    Diagnosis("K35.800", "A04", "infection", 2),   # 急性阑尾炎
    Diagnosis("K80.100", "A04", "infection", 2),   # 胆囊结石伴急性胆囊炎
    Diagnosis("I63.900", "A03", "cardio", 3),      # 脑梗死
    Diagnosis("I25.100", "A03", "cardio", 3),      # 冠心病
    Diagnosis("I10.x00", "A03", "cardio", 2),      # 高血压
    Diagnosis("E11.900", "A03", "general", 2),     # 2型糖尿病
    Diagnosis("S72.000", "A04", "general", 1),     # 股骨颈骨折
)
CHEMO_DX = Diagnosis("Z51.102", "A19", "chemo", 1)  # 肿瘤化疗 (planned cycles)
OUTPATIENT_DX = (
    Diagnosis("J06.900", "A03", "op", 5),   # 急性上呼吸道感染
    Diagnosis("J20.900", "A03", "op", 3),   # 急性支气管炎
    Diagnosis("K29.700", "A03", "op", 3),   # 胃炎
    Diagnosis("M54.500", "A04", "rehab", 2),  # 腰痛
    Diagnosis("L30.900", "A13", "op", 1),   # 皮炎
    Diagnosis("R51.x00", "A03", "op", 1),   # 头痛
)
CHRONIC_DX = (
    Diagnosis("I10.x00", "A03", "htn", 5),
    Diagnosis("E11.900", "A03", "dm", 4),
    Diagnosis("I25.100", "A03", "cad", 2),
)
DIALYSIS_DX = Diagnosis("N18.500", "A03", "dialysis", 1)  # 慢性肾脏病5期


@dataclass(frozen=True)
class Item:
    code: str
    name: str
    category: str
    price: str  # yuan per unit, at a level-3 hospital (the catalogue standard)
    generic: str | None = None
    capped: bool = False  # catalogue price_cap = price
    gender: str | None = None
    daily_max: int | None = None
    dose: int = 1  # an inpatient day's quantity
    script: int = 1  # quantity of one outpatient prescription or pharmacy purchase
    pools: tuple[str, ...] = ()


def _x(atc: str, n: int) -> str:
    """A 23-character western-drug code in the national layout (invented)."""
    return f"X{atc}A{n:03d}A001010100{n:03d}"[:23].ljust(23, "0")


def _z(n: int) -> str:
    return f"ZA{n:04d}AAB0123010104{n:02d}"[:23]


def _t(n: int) -> str:
    return f"T{n:06d}0000000000000000"[:23]


def _c(n: int) -> str:
    return f"C{n:04d}06011100100001{n:03d}"[:23]


ITEMS: tuple[Item, ...] = (
    # 01 床位费, 02 诊察费, 12 一般诊疗费, 13 挂号费
    Item("001101000010000", "普通病房床位费(三人间)", "01", "30", capped=True, pools=("bed",)),
    Item("001101000020000", "普通病房床位费(双人间)", "01", "50", capped=True, pools=("bed3",)),
    Item("001101000030000", "重症监护病房床位费", "01", "120", capped=True),
    Item("001102000010000", "住院诊查费", "02", "12", capped=True, pools=("ward_exam",)),
    Item("001102000020000", "门诊诊查费", "02", "10", capped=True, pools=("op_exam",)),
    Item("001103000010000", "一般诊疗费", "12", "10", pools=("gp_fee",)),
    Item("001104000010000", "挂号费", "13", "1", pools=("registration",)),
    # 07 护理费: exactly one level per stay-day (the shipped exclusive pairs)
    Item("001201000010000", "一级护理", "07", "28", capped=True, pools=("nursing",)),
    Item("001201000020000", "二级护理", "07", "18", capped=True, pools=("nursing",)),
    Item("001201000030000", "三级护理", "07", "10", capped=True, pools=("nursing",)),
    Item("001201000040000", "特级护理", "07", "60", capped=True),
    # 05 治疗费
    Item("001206000010000", "静脉输液", "05", "8", capped=True, daily_max=6, pools=("iv",)),
    Item("001206000020000", "肌肉注射", "05", "3", capped=True, daily_max=4),
    Item("001206000030000", "雾化吸入", "05", "6", capped=True, daily_max=4),
    Item("003104000010000", "血液透析", "05", "420", capped=True, pools=("dialysis",)),
    Item("003104000020000", "血液透析滤过", "05", "580", capped=True, pools=("dialysis",)),
    Item("003104000030000", "血液灌流", "05", "900", capped=True),
    Item("004000000010000", "中频脉冲电治疗", "05", "10.45", capped=True, pools=("rehab",)),
    Item("004000000020000", "普通针刺", "05", "20", capped=True, pools=("rehab",)),
    Item("004000000030000", "推拿治疗", "05", "100", capped=True, pools=("rehab",)),
    # 03 检查费, 04 化验费
    Item("002501010150000", "血细胞分析(血常规)", "04", "20", capped=True,
         pools=("panel", "lab", "op_lab")),
    Item("002503010010000", "肝功能检测", "04", "45", capped=True, pools=("panel", "lab")),
    Item("002503020010000", "肾功能检测", "04", "30", capped=True, pools=("panel",)),
    Item("003107010010000", "常规心电图检查", "03", "15", capped=True, pools=("panel", "op_lab")),
    Item("002102000010000", "胸部CT平扫", "03", "180", capped=True),
    Item("002202000010000", "彩色多普勒超声检查", "03", "150", capped=True, pools=("op_lab",)),
    Item("002504030090000", "糖化血红蛋白测定", "04", "60", capped=True, pools=("chronic_lab",)),
    Item("002504040150000", "前列腺特异性抗原测定", "04", "60", capped=True, gender="1",
         pools=("male",)),
    Item("002202000050000", "前列腺彩超检查", "03", "80", capped=True, gender="1"),
    Item("002504030670000", "人乳头瘤病毒核酸检测", "04", "200", capped=True, gender="2",
         pools=("female",)),
    Item("003110000010000", "阴道镜检查", "03", "80", capped=True, gender="2"),
    # 09 西药 (only inpatient injections carry daily maxima: an outpatient script of
    # tablets is billed on one day)
    Item(_x("B05XA", 1), "0.9%氯化钠注射液", "09", "3.5", "氯化钠", daily_max=6, dose=2,
         pools=("infection", "cardio", "general", "chemo")),
    Item(_x("J01DD", 4), "注射用头孢曲松钠", "09", "6.8", "头孢曲松", daily_max=4, dose=2,
         pools=("infection",)),
    Item(_x("J01DC", 2), "注射用头孢呋辛钠", "09", "9.6", "头孢呋辛", daily_max=6, dose=3,
         pools=("infection",)),
    Item(_x("J01MA", 12), "盐酸左氧氟沙星注射液", "09", "12", "左氧氟沙星", daily_max=2,
         pools=("infection", "general")),
    Item(_x("A02BC", 1), "注射用奥美拉唑钠", "09", "8.5", "奥美拉唑", daily_max=2,
         pools=("infection", "general", "cardio", "chemo")),
    Item(_x("B01AC", 4), "硫酸氢氯吡格雷片", "09", "2.8", "氯吡格雷", script=28,
         pools=("cardio", "cad")),
    Item(_x("C10AA", 5), "阿托伐他汀钙片", "09", "1.2", "阿托伐他汀", script=28,
         pools=("cardio", "htn", "cad", "pharmacy_rx")),
    Item(_x("C08CA", 1), "苯磺酸氨氯地平片", "09", "0.45", "氨氯地平", script=28,
         pools=("cardio", "htn")),
    Item(_x("C08CA", 5), "硝苯地平控释片", "09", "2.3", "硝苯地平", script=30, pools=("htn",)),
    Item(_x("B01AC", 6), "阿司匹林肠溶片", "09", "0.15", "阿司匹林", script=30,
         pools=("cardio", "cad", "htn")),
    Item(_x("A10BA", 2), "盐酸二甲双胍片", "09", "0.12", "二甲双胍", dose=3, script=90,
         pools=("general", "dm")),
    Item(_x("A10AE", 4), "甘精胰岛素注射液", "09", "78", "甘精胰岛素", script=2, pools=("dm",)),
    Item(_x("A10BF", 1), "阿卡波糖片", "09", "1.6", "阿卡波糖", script=90, pools=("dm",)),
    Item(_x("L01CD", 1), "注射用紫杉醇", "09", "280", "紫杉醇", daily_max=2, pools=("chemo",)),
    Item(_x("J01CA", 4), "阿莫西林胶囊", "09", "0.35", "阿莫西林", script=24, pools=("op",)),
    Item(_x("A02BC", 2), "奥美拉唑肠溶胶囊", "09", "0.5", "奥美拉唑", script=14,
         pools=("op", "pharmacy_rx")),
    Item(_x("M01AE", 1), "布洛芬缓释胶囊", "09", "0.6", "布洛芬", script=20, pools=("op", "rehab")),
    Item(_x("R06AX", 13), "氯雷他定片", "09", "1.1", "氯雷他定", script=6, pools=("op",)),
    # 11 中成药 and 10 中药饮片 (the 张掖 2023 list matches several by name)
    Item(_z(1), "复方丹参滴丸", "11", "25.8", "复方丹参滴丸",
         pools=("pharmacy", "cad")),
    Item(_z(2), "连花清瘟胶囊", "11", "14.8", "连花清瘟胶囊", pools=("pharmacy", "op")),
    Item(_z(3), "六味地黄丸", "11", "18", "六味地黄丸", pools=("pharmacy",)),
    Item(_z(4), "速效救心丸", "11", "28", "速效救心丸", pools=("pharmacy",)),
    Item(_z(5), "脑心通胶囊", "11", "45", "脑心通胶囊", pools=("pharmacy",)),
    Item(_z(6), "板蓝根颗粒", "11", "12", "板蓝根颗粒", pools=("pharmacy", "op")),
    Item(_z(7), "感冒灵颗粒", "11", "10", "感冒灵颗粒", pools=("pharmacy",)),
    Item(_z(8), "蒲地蓝消炎片", "11", "22", "蒲地蓝消炎片", pools=("pharmacy",)),
    Item(_t(1), "黄芪", "10", "0.12", "黄芪", script=210, pools=("herbs",)),
    Item(_t(2), "当归", "10", "0.3", "当归", script=105, pools=("herbs",)),
    Item(_t(3), "甘草片", "10", "0.08", "甘草", script=70, pools=("herbs",)),
    Item(_t(4), "茯苓", "10", "0.1", "茯苓", script=140, pools=("herbs",)),
    # 08 卫生材料费
    Item(_c(1), "一次性使用输液器", "08", "2.5", pools=("iv_set",)),
    Item(_c(2), "一次性使用无菌注射器", "08", "0.6"),
    # Kept out of the background: only the injected cases bill these.
    Item(_x("B05AA", 1), "人血白蛋白", "09", "360", "人血白蛋白", pools=("growth",)),
    Item(_x("L01XC", 7), "贝伐珠单抗注射液", "09", "1198.5", "贝伐珠单抗", pools=("growth",)),
    Item(_x("L01XC", 3), "注射用曲妥珠单抗", "09", "1620", "曲妥珠单抗", pools=("growth",)),
    Item(_x("L01XE", 35), "甲磺酸奥希替尼片", "09", "51.3", "奥希替尼", pools=("growth",)),
    Item(_x("J01DH", 2), "注射用美罗培南", "09", "96.7", "美罗培南", pools=("growth",)),
    Item(_x("L04AC", 10), "司库奇尤单抗注射液", "09", "1188", "司库奇尤单抗", pools=("growth",)),
    Item(_x("A07BC", 5), "蒙脱石散", "09", "1.9", "蒙脱石", pools=("stock",)),
    Item(_x("A11GA", 1), "维生素C片", "09", "0.05", "维生素C", pools=("stock",)),
    Item(_x("A12AX", 1), "碳酸钙D3片", "09", "0.9", "碳酸钙D3", pools=("stock",)),
    Item(_z(9), "健胃消食片", "11", "9.5", "健胃消食片", pools=("stock",)),
    Item(_c(3), "医用棉签", "08", "2", pools=("stock",)),
    Item(_c(4), "医用外科口罩", "08", "0.8", pools=("stock",)),
    Item(_t(5), "陈皮(公斤)", "10", "60", "陈皮", pools=("stock",)),
    Item(_x("D08AG", 2), "碘伏消毒液", "09", "6.5", "聚维酮碘", pools=("stock",)),
)

# Institution name parts.
HOSPITAL_KINDS = {"3": "市医院", "2": "人民医院", "1": "卫生院"}
PHARMACY_BRANDS = ("惠民大药房", "同仁堂药店", "益丰大药房", "国大药房", "老百姓大药房", "康宁药店")

"""Injected cases: for every sub-rule, positives and decoys just outside its edges.

Each function below writes one sub-rule's cases and their truth: one set per call,
or (``ALL_COPIES``) all ``copies`` sets at once.
Every case gets fresh persons, so person-keyed rules cannot see each other's cases;
institution-keyed cases (stock, growth, bursts) get institutions, items or night
hours of their own. Notes are in Chinese, for the investigators who read the
truth next to the engine's messages.

Reading the truth: a ``positive`` must be found; a ``decoy`` is violated when the
engine emits a suspicion of that rule whose fields equal all its non-empty keys.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_DOWN, Decimal

import numpy as np

from fraudscreen.sample.draft import Draft, clock, day
from fraudscreen.sample.reference import END, N_DAYS, START

POSITIVE, DECOY = "positive", "decoy"


def _base(d: Draft, span: int) -> int:
    """A first day leaving ``span`` days of room before the end of the data."""
    return int(d.rng.integers(3, N_DAYS - span - 2))


def _hospitals(d: Draft, n: int = 2) -> list[int]:
    return [int(h) for h in d.rng.choice(d.world.hospitals, n, replace=False)]


def _pharmacy(d: Draft) -> int:
    return int(d.rng.choice(d.world.pharmacies))


def _spread(order: np.ndarray, copies: int, kinds: int) -> list[list[int]]:
    """``[copy][kind]`` institutions from ``order``: a kind of case never twice at one."""
    if copies > order.size:
        raise ValueError(f"{copies} copies of the cases need at least {copies} institutions")
    return [[int(order[(c + k * copies) % order.size]) for k in range(kinds)]
            for c in range(copies)]


def readmission(d: Draft) -> None:
    """split_hospitalisation.readmission: gap 0–15 days, same 3-character category."""
    rule = "split_hospitalisation.readmission"
    h, other = _hospitals(d)

    def pair(dx1: str, los1: int, gap: int, dx2: str, los2: int, inst2: int = h,
             gender: int | None = None) -> tuple[int, int, int]:
        p = d.person(gender=gender)
        b = _base(d, los1 + gap + los2)
        first = d.stay(p, h, b, los1, dx1)
        return p, first, d.stay(p, inst2, b + los1 + gap, los2, dx2)

    p, _, s = pair("J18.900", 5, 15, "J18.000", 4)
    d.expect(rule, POSITIVE, "出院后第15天再次入院（恰为上限），前后均为J18肺炎",
             settlement=s, person=p, institution=h)
    p, _, s = pair("I10.x00", 4, 0, "I10.x03", 3)
    d.expect(rule, POSITIVE, "出院当天再次入院（间隔0天），前后均为I10高血压",
             settlement=s, person=p, institution=h)
    p = d.person()
    b = _base(d, 4 + 3 + 4 + 10 + 3)
    d.stay(p, h, b, 4, "K80.100")
    second = d.stay(p, h, b + 7, 4, "K80.100")
    third = d.stay(p, h, b + 21, 3, "K80.000")
    d.expect(rule, POSITIVE, "三次住院链中的第二次（间隔3天，K80胆石症）",
             settlement=second, person=p, institution=h)
    d.expect(rule, POSITIVE, "三次住院链中的第三次（与第二次间隔10天，K80胆石症）",
             settlement=third, person=p, institution=h)

    p, _, s = pair("J18.900", 5, 16, "J18.900", 3)
    d.expect(rule, DECOY, "间隔16天，超过15天", settlement=s, person=p, institution=h)
    p, _, s = pair("Z51.102", 2, 7, "Z51.102", 2)
    d.expect(rule, DECOY, "Z51化疗按周期计划住院，间隔7天不算分解住院",
             settlement=s, person=p, institution=h)
    p, _, s = pair("Z49.101", 1, 2, "Z49.101", 1)
    d.expect(rule, DECOY, "Z49透析计划住院，间隔2天不算分解住院",
             settlement=s, person=p, institution=h)
    p, _, s = pair("O82.000", 4, 5, "O82.000", 3, gender=2)
    d.expect(rule, DECOY, "O82分娩（O80–O84计划类），间隔5天不算分解住院",
             settlement=s, person=p, institution=h)
    p, _, s = pair("J18.900", 5, 5, "K35.800", 4)
    d.expect(rule, DECOY, "间隔5天但诊断类目不同（J18→K35）",
             settlement=s, person=p, institution=h)
    p, _, s = pair("J18.900", 5, 5, "J18.900", 4, inst2=other)
    d.expect(rule, DECOY, "间隔5天、同诊断，但在另一家医院",
             settlement=s, person=p, institution=other)
    p, _, s = pair("I63.900", 5, 10, "I63.900", 4)
    r = d.reverse(s)
    d.expect(rule, DECOY, "间隔10天、同为I63，但后一次住院已冲销",
             settlement=s, person=p, institution=h)
    d.expect(rule, DECOY, "上一条已冲销住院的冲销行", settlement=r, person=p, institution=h)


def idle_stay(d: Draft) -> None:
    """bed_holding.idle_stay: ≥ 3 idle days and ≥ 50 % of the LOS."""
    rule = "bed_holding.idle_stay"
    (h,) = _hospitals(d, 1)

    def stay(los: int, **kw) -> int:
        return d.stay(d.person(), h, _base(d, los), los, "J44.100", **kw)

    d.expect(rule, POSITIVE, "住院6天，第4–6天只有床位、护理、诊查费（恰好3天、50%）",
             settlement=stay(6, idle={3, 4, 5}))
    d.expect(rule, POSITIVE, "住院10天，其中8天只有床位、护理、诊查费",
             settlement=stay(10, idle=set(range(2, 10))))
    d.expect(rule, POSITIVE, "住院4天，后3天没有任何费用（床位费入院日一次收4天）",
             settlement=stay(4, blank={1, 2, 3}, beds=[(0, 4)]))
    d.expect(rule, DECOY, "住院4天，只有2个空闲日（虽占50%，不足3天）",
             settlement=stay(4, idle={2, 3}))
    d.expect(rule, DECOY, "住院7天，3个空闲日只占43%",
             settlement=stay(7, idle={4, 5, 6}))
    d.expect(rule, DECOY, "住院4天2个空闲日；出院日只有诊查费，但出院日不计入",
             settlement=stay(4, idle={2, 3}, extra=[(4, "住院诊查费", 1, "08:00")]))
    d.expect(rule, DECOY, "住院6天，第6天虽无用药但有血常规化验，不算空闲，仅2个空闲日",
             settlement=stay(6, idle={3, 4, 5},
                             extra=[(5, "血细胞分析(血常规)", 1, "07:00")]))
    s = stay(6, idle={2, 3, 4, 5})
    r = d.reverse(s)
    d.expect(rule, DECOY, "4个空闲日的住院，但已冲销", settlement=s)
    d.expect(rule, DECOY, "上一条已冲销住院的冲销行", settlement=r)


def elsewhere_during_stay(d: Draft) -> None:
    """bed_holding.elsewhere_during_stay: another institution strictly inside the stay."""
    rule = "bed_holding.elsewhere_during_stay"
    h, other = _hospitals(d)
    drugstore = _pharmacy(d)

    def stay() -> tuple[int, int, int]:
        p, b = d.person(), _base(d, 8)
        return p, b, d.stay(p, h, b, 8, "J44.100")

    def buy(p: int, when: dt.datetime) -> int:
        return d.visit(p, drugstore, "41", when, [("感冒灵颗粒", 1)])

    p, b, s = stay()
    buy(p, clock(day(b + 3), "15:00"))
    d.expect(rule, POSITIVE, "住院第4天在药店购药", settlement=s)
    p, b, s = stay()
    d.visit(p, other, "11", clock(day(b + 1), "10:00"), [("挂号费", 1), ("门诊诊查费", 1)],
            dx="J06.900")
    d.expect(rule, POSITIVE, "入院次日在另一医院普通门诊就诊", settlement=s)
    p, b, s = stay()
    d.visit(p, other, "14", clock(day(b + 7), "23:00"),
            [("门诊诊查费", 1), ("苯磺酸氨氯地平片", 28)], dx="I10.x00")
    d.expect(rule, POSITIVE, "出院前一天23:00在另一医院门诊慢特病结算", settlement=s)

    p, b, s = stay()
    buy(p, clock(day(b), "20:00"))
    d.expect(rule, DECOY, "入院当天晚上在药店购药（入院日当天不算）", settlement=s)
    p, b, s = stay()
    buy(p, clock(day(b + 8), "08:00"))
    d.expect(rule, DECOY, "出院当天早上在药店购药（出院日当天不算）", settlement=s)
    p, b, s = stay()
    d.visit(p, h, "11", clock(day(b + 4), "10:00"), [("挂号费", 1), ("门诊诊查费", 1)],
            dx="J06.900")
    d.expect(rule, DECOY, "住院期间在同一医院门诊（同一机构不算）", settlement=s)
    p, b, s = stay()
    d.reverse(buy(p, clock(day(b + 4), "15:00")))
    d.expect(rule, DECOY, "住院期间的药店购药已冲销", settlement=s)


def repeated_line(d: Draft) -> None:
    """duplicate_charge.repeated_line: same item, time, quantity and price twice."""
    rule = "duplicate_charge.repeated_line"
    (h,) = _hospitals(d, 1)
    drugstore = _pharmacy(d)

    def visit(lines: list[tuple[str, int, str, str | None]]) -> int:
        """An outpatient visit with (item, quantity, "hh:mm:ss", price) lines."""
        when = clock(day(_base(d, 1)), "09:00")
        s = d.visit(d.person(), h, "11", when, [("挂号费", 1), ("门诊诊查费", 1)],
                    dx="J06.900")
        for item, qty, hhmm, price in lines:
            d.line(s, item, clock(when.date(), hhmm), qty, price)
        return s

    twice = [("阿莫西林胶囊", 24, "09:20:00", None)] * 2
    d.expect(rule, POSITIVE, "门诊同一时间两条完全相同的阿莫西林胶囊明细",
             settlement=visit(twice), item="阿莫西林胶囊")
    s = d.stay(d.person(), h, _base(d, 3), 3, "J18.900",
               extra=[(1, "胸部CT平扫", 1, "11:00")] * 3)
    d.expect(rule, POSITIVE, "住院同一天同一时间三条胸部CT平扫", settlement=s,
             item="胸部CT平扫")
    when = clock(day(_base(d, 1)), "18:10")
    s = d.settlement(d.person(), drugstore, "41", when)
    for _ in range(2):
        d.line(s, "板蓝根颗粒", when, 2)
    d.expect(rule, POSITIVE, "药店一笔结算中两条相同的板蓝根颗粒明细", settlement=s,
             item="板蓝根颗粒")

    d.expect(rule, DECOY, "同时间同项目但数量不同（14与28）",
             settlement=visit([("奥美拉唑肠溶胶囊", 14, "09:20:00", None),
                               ("奥美拉唑肠溶胶囊", 28, "09:20:00", None)]),
             item="奥美拉唑肠溶胶囊")
    d.expect(rule, DECOY, "同项目同数量但时间相差1分钟",
             settlement=visit([("血细胞分析(血常规)", 1, "09:15:00", None),
                               ("血细胞分析(血常规)", 1, "09:16:00", None)]),
             item="血细胞分析(血常规)")
    d.expect(rule, DECOY, "同时间同数量但单价不同（0.35与0.34）",
             settlement=visit([("阿莫西林胶囊", 24, "09:20:00", "0.35"),
                               ("阿莫西林胶囊", 24, "09:20:00", "0.34")]),
             item="阿莫西林胶囊")
    s = visit(twice)
    r = d.reverse(s)
    d.expect(rule, DECOY, "重复明细所在结算已冲销", settlement=s, item="阿莫西林胶囊")
    d.expect(rule, DECOY, "上一条已冲销结算的冲销行", settlement=r, item="阿莫西林胶囊")


def bed_days_beyond_stay(d: Draft) -> None:
    """duplicate_charge.bed_days_beyond_stay: bed quantity > LOS (same-day stay = 1)."""
    rule = "duplicate_charge.bed_days_beyond_stay"
    (h,) = _hospitals(d, 1)

    def stay(los: int, **kw) -> int:
        return d.stay(d.person(), h, _base(d, los), los, "S72.000", **kw)

    extra_bed = [(5, "普通病房床位费(三人间)", 1, "08:00")]
    d.expect(rule, POSITIVE, "住院5天，出院日又收1天床位费，共6天",
             settlement=stay(5, extra=extra_bed))
    d.expect(rule, POSITIVE, "当日入出院按1天计，收床位费2天",
             settlement=stay(0, beds=[(0, 2)]))
    d.expect(rule, POSITIVE, "住院3天，入院日一次收床位费5天",
             settlement=stay(3, beds=[(0, 5)]))
    d.expect(rule, DECOY, "住院5天，床位费5天（算入不算出）", settlement=stay(5))
    d.expect(rule, DECOY, "当日入出院，床位费1天", settlement=stay(0))
    icu = [(k, "重症监护病房床位费", 1, "23:50") for k in (2, 3)]
    d.expect(rule, DECOY, "住院4天，普通床位2天加ICU床位2天，合计4天",
             settlement=stay(4, beds=[(0, 1), (1, 1)], extra=icu))


def daily_cap(d: Draft) -> None:
    """duplicate_charge.daily_cap: a day's quantity above max_daily_quantity."""
    rule = "duplicate_charge.daily_cap"
    (h,) = _hospitals(d, 1)

    def stay(los: int, extra) -> int:
        return d.stay(d.person(), h, _base(d, los), los, "J18.900", extra=extra)

    ceftriaxone = "注射用头孢曲松钠"
    d.expect(rule, POSITIVE, "头孢曲松日最大4支，同日两次共5支（超1支）",
             settlement=stay(4, [(1, ceftriaxone, 3, "08:00"), (1, ceftriaxone, 2, "20:00")]),
             item=ceftriaxone)
    d.expect(rule, POSITIVE, "肌肉注射日最大4次，当日收7次",
             settlement=stay(4, [(2, "肌肉注射", 7, "09:30")]), item="肌肉注射")
    saline = "0.9%氯化钠注射液"
    d.expect(rule, POSITIVE, "氯化钠注射液日最大6袋，当日两次共8袋",
             settlement=stay(3, [(1, saline, 4, "08:30"), (1, saline, 4, "16:30")]),
             item=saline)
    d.expect(rule, DECOY, "雾化吸入当日4次，恰好等于日最大数量",
             settlement=stay(4, [(1, "雾化吸入", 4, "09:00")]), item="雾化吸入")
    d.expect(rule, DECOY, "头孢曲松23:59:59与次日00:00:00各4支，每天都未超",
             settlement=stay(4, [(1, ceftriaxone, 4, "23:59:59"),
                                 (2, ceftriaxone, 4, "00:00:00")]),
             item=ceftriaxone)
    d.expect(rule, DECOY, "注射器当日30支，但目录未规定日最大数量",
             settlement=stay(3, [(1, "一次性使用无菌注射器", 30, "09:00")]),
             item="一次性使用无菌注射器")


def exclusive_items(d: Draft) -> None:
    """duplicate_charge.exclusive_items: a shipped exclusive pair on one day."""
    rule = "duplicate_charge.exclusive_items"
    h, dialysis_centre = _hospitals(d)

    def stay(los: int, **kw) -> int:
        return d.stay(d.person(), h, _base(d, los), los, "I63.900", **kw)

    def sessions(items: list[tuple[int, str]]) -> int:
        """门诊透析 (14) settlement with (day offset, item) lines."""
        b = _base(d, 3)
        s = d.settlement(d.person(), dialysis_centre, "14", clock(day(b), "07:30"),
                         dx="N18.500")
        for k, item in items:
            d.line(s, item, clock(day(b + k), "08:00"))
        return s

    d.expect(rule, POSITIVE, "同日一级护理与二级护理，较便宜的二级护理计为疑点",
             settlement=stay(5, nursing="一级护理", extra=[(2, "二级护理", 1, "12:00")]),
             item="二级护理")
    d.expect(rule, POSITIVE, "同日特级护理与一级护理，较便宜的一级护理计为疑点",
             settlement=stay(4, nursing="一级护理", extra=[(1, "特级护理", 1, "12:00")]),
             item="一级护理")
    d.expect(rule, POSITIVE, "同日血液透析与血液透析滤过，较便宜的血液透析计为疑点",
             settlement=sessions([(0, "血液透析"), (0, "血液透析滤过")]), item="血液透析")
    d.expect(rule, DECOY, "第4天起由一级护理改为二级护理，不在同一天",
             settlement=stay(6, nursing=["一级护理"] * 3 + ["二级护理"] * 3), item="二级护理")
    d.expect(rule, DECOY, "同日血液灌流与血液透析，二者不互斥",
             settlement=sessions([(0, "血液灌流"), (0, "血液透析")]), item="血液透析")
    d.expect(rule, DECOY, "同一结算中血液透析与血液透析滤过分在两天",
             settlement=sessions([(0, "血液透析"), (2, "血液透析滤过")]), item="血液透析")


def over_price_cap(d: Draft) -> None:
    """duplicate_charge.over_price_cap: unit price more than 1 % above price_cap."""
    rule = "duplicate_charge.over_price_cap"
    cases = [
        (POSITIVE, "推拿治疗", "101.50", 1, "限价100元，收101.50元（超1.5%）"),
        (POSITIVE, "普通针刺", "20.30", 2, "限价20元，收20.30元（超1.5%）"),
        (POSITIVE, "彩色多普勒超声检查", "180", 1, "限价150元，收180元（超20%）"),
        (DECOY, "推拿治疗", "101.00", 1, "限价100元，收101.00元（恰好超1%）"),
        (DECOY, "中频脉冲电治疗", "10.5545", 2,
         "限价10.45元，收10.5545元，恰好超1%（按二进制浮点计算会误判为超出）"),
        (DECOY, "普通针刺", "20.20", 1, "限价20元，收20.20元（恰好超1%）"),
    ]
    (h,) = _hospitals(d, 1)
    for expected, item, price, qty, note in cases:
        when = clock(day(_base(d, 1)), "10:00")
        s = d.visit(d.person(), h, "11", when, [("挂号费", 1)], dx="M54.500")
        d.line(s, item, when + dt.timedelta(minutes=5), qty, price)
        d.expect(rule, expected, note, settlement=s, item=item)


def billed_more_than_bought(d: Draft, copies: int) -> None:
    """item_substitution.billed_more_than_bought: sold > 1.1 × bought (30-day lookback).

    Each case has its own reserved item, sold only here; some pharmacies get no
    purchase rows at all (their stock data is missing: not judged).
    """
    rule = "item_substitution.billed_more_than_bought"
    before = START - dt.timedelta(days=30)
    too_early = START - dt.timedelta(days=31)
    after = END + dt.timedelta(days=1)
    cases = [  # expected, item, sold, purchases (date, qty), note
        (POSITIVE, "蒙脱石散", "115", [(day(3), 60), (day(90), 40)], "进货100、结算115（超15%）"),
        (POSITIVE, "维生素C片", "200", [], "药店有进货记录，但从未进过此药，结算200"),
        (POSITIVE, "碳酸钙D3片", "150", [(day(10), 100), (too_early, 40)],
         "分析期前31天的进货40不计入：进货100、结算150"),
        (POSITIVE, "健胃消食片", "120", [(day(10), 100), (after, 50)],
         "分析期结束后的进货50不计入：进货100、结算120"),
        (DECOY, "医用棉签", "110", [(day(2), 100)], "进货100、结算110（恰好超10%）"),
        (DECOY, "医用外科口罩", "110", [(before, 40), (day(40), 60)],
         "分析期前30天的进货40计入：进货100、结算110（恰好超10%）"),
        (DECOY, "陈皮(公斤)", "35.651", [(day(5), "32.41")],
         "进货32.41公斤、结算35.651公斤，恰好超10%（按二进制浮点计算会误判为超出）"),
    ]
    order = d.rng.permutation(d.world.pharmacies)
    unstocked = [int(i) for i in order[:copies]]
    d.no_stock.update(unstocked)
    for row, bare in zip(_spread(order[copies:], copies, len(cases)), unstocked,
                         strict=True):
        for inst, (expected, item, sold, bought, note) in zip(row, cases, strict=True):
            d.own_stock.add((inst, d.world.item(item)))
            for when, qty in bought:
                d.purchase(inst, item, when, qty)
            _sell(d, inst, item, sold)
            d.expect(rule, expected, note, institution=inst, item=item)
        _sell(d, bare, "碘伏消毒液", "50")
        d.expect(rule, DECOY, "该药店没有任何进货记录（数据缺失），不作判断：结算50",
                 institution=bare, item="碘伏消毒液")


def _sell(d: Draft, inst: int, item: str, total: str, n: int = 10) -> None:
    """``total`` units of ``item`` sold in ``n`` purchases by different local persons."""
    total_units = Decimal(total)
    each = (total_units / n).quantize(Decimal("0.0001"), rounding=ROUND_DOWN)
    first = _base(d, 15 * n)
    for k in range(n):
        qty = each if k else total_units - each * (n - 1)
        d.visit(d.person(), inst, "41", clock(day(first + 15 * k), "19:20"), [(item, str(qty))])


def wrong_gender(d: Draft) -> None:
    """item_substitution.wrong_gender: a gender-limited item for the other gender."""
    rule = "item_substitution.wrong_gender"
    cases = [
        (POSITIVE, 2, "前列腺特异性抗原测定", "女性参保人收取前列腺特异性抗原测定（限男性）"),
        (POSITIVE, 1, "人乳头瘤病毒核酸检测", "男性参保人收取人乳头瘤病毒核酸检测（限女性）"),
        (POSITIVE, 1, "阴道镜检查", "男性参保人收取阴道镜检查（限女性）"),
        (DECOY, 1, "前列腺特异性抗原测定", "男性参保人做前列腺特异性抗原测定（性别相符）"),
        (DECOY, 2, "人乳头瘤病毒核酸检测", "女性参保人做人乳头瘤病毒核酸检测（性别相符）"),
        (DECOY, 1, "前列腺彩超检查", "男性参保人做前列腺彩超（性别相符）"),
    ]
    (h,) = _hospitals(d, 1)
    for expected, gender, item, note in cases:
        s = d.visit(d.person(gender=gender), h, "11", clock(day(_base(d, 1)), "10:30"),
                    [("挂号费", 1), ("门诊诊查费", 1), (item, 1)], dx="R51.x00")
        d.expect(rule, expected, note, settlement=s, item=item)


def monthly_growth(d: Draft, copies: int) -> None:
    """key_item_growth.monthly_growth: month ≥ 1.5 × the previous and + ¥10,000.

    Each case bills a watched item that the background never bills, at a hospital
    of its own, so the monthly totals are exactly the ones written here.
    """
    rule = "key_item_growth.monthly_growth"
    cases = [  # expected, item, before, from month m on, diagnosis, gender, note
        (POSITIVE, "人血白蛋白", "20000", "30000", "K74.600", None,
         "上月20000元，本月30000元：恰好1.5倍且恰好增加10000元"),
        (POSITIVE, "注射用美罗培南", "0", "12000", "J18.900", None,
         "上月无结算（按0计），本月12000元"),
        (POSITIVE, "贝伐珠单抗注射液", "8000", "24000", "C18.900", None,
         "上月8000元，本月24000元（3倍）"),
        (DECOY, "注射用曲妥珠单抗", "30000", "44700", "C50.900", 2,
         "上月30000元，本月44700元：只有1.49倍"),
        (DECOY, "甲磺酸奥希替尼片", "10000", "19999", "C34.900", None,
         "上月10000元，本月19999元：只增加9999元"),
    ]
    places = _spread(d.rng.permutation(d.world.hospitals), copies, 1)
    for c, (h,) in enumerate(places):
        m = 3 + c % 3  # the month of the change: March, April or May
        for expected, item, before, now, dx, gender, note in cases:
            totals = [before] * (m - 1) + [now] * (7 - m)
            d.bill_months(d.person(gender=gender), h, item, totals, dx)
            d.expect(rule, expected, note, institution=h, item=item,
                     period=dt.date(START.year, m, 1))
        d.bill_months(d.person(), h, "司库奇尤单抗注射液", ["50000"] * 6, "L40.000")
        d.expect(rule, DECOY, "每月50000元；1月是数据首月，上月早于最早费用月份，不判断",
                 institution=h, item="司库奇尤单抗注射液", period=START)


def offsite_burst(d: Draft, copies: int) -> None:
    """pharmacy_card_skimming.offsite_burst: ≥ 5 distinct off-site cards in 10 minutes.

    Bursts happen from 20:30, after the background's last off-site slot, each case
    25 minutes after the previous one, so no two cases can merge.
    """
    rule = "pharmacy_card_skimming.offsite_burst"
    cases = [  # expected, minutes after the first, who (person index), persons' kind, note
        (POSITIVE, [0, 2, 5, 7, 10], [0, 1, 2, 3, 4], "offsite",
         "5名异地参保人，首末恰好相隔10分钟"),
        (POSITIVE, [0, 0.5, 1, 2, 3, 4, 5, 6], [0, 1, 2, 0, 3, 4, 5, 1], "offsite",
         "6分钟内8笔、6名不同异地参保人"),
        (POSITIVE, [0, 1, 2, 3, 4], [0, 1, 2, 3, 4], "offsite", "4分钟内5名异地参保人"),
        (DECOY, [0, 3, 6, 9, 11], [0, 1, 2, 3, 4], "offsite",
         "5名异地参保人但首末相隔11分钟，任意10分钟内只有4名"),
        (DECOY, [0, 1, 2, 3, 4], [0, 1, 2, 3, 0], "offsite", "5笔但只有4名不同参保人"),
        (DECOY, [0, 1, 2, 3, 4], [0, 1, 2, 3, 4], "local", "5名本地参保人（非异地）"),
        (DECOY, [0, 1, 2, 3, 4], [0, 1, 2, 3, 4], "same_area",
         "其中1人参保地与药店同属3509统筹区（区划代码不同），不算异地，异地只有4名"),
        (DECOY, [0, 1, 2, 3, 4], [0, 1, 2, 3, 4], "reversed", "5名异地参保人，但其中1笔已冲销"),
    ]
    places = _spread(d.rng.permutation(d.world.pharmacies), copies, len(cases))
    for row in places:
        b = _base(d, 1)
        for k, (inst, case) in enumerate(zip(row, cases, strict=True)):
            expected, minutes, who, kind, note = case
            persons = [d.person(offsite=kind != "local") for _ in range(max(who))]
            if kind == "same_area":
                region = d.world.inst_region[inst]
                persons.append(d.person(region="350981" if region != "350981" else "350982"))
            else:
                persons.append(d.person(offsite=kind != "local"))
            start = clock(day(b), "20:30") + dt.timedelta(minutes=25 * k)
            # A card swiped twice buys another drug the second time (not a hoarding case).
            skeys = [d.visit(persons[i], inst, "41", start + dt.timedelta(minutes=m),
                             [("速效救心丸" if i in who[:n] else "脑心通胶囊", 2)])
                     for n, (m, i) in enumerate(zip(minutes, who, strict=True))]
            if kind == "reversed":
                d.reverse(skeys[-1])
            d.expect(rule, expected, note, institution=inst, settlement=skeys[0])


def hoarding(d: Draft) -> None:
    """pharmacy_card_skimming.hoarding: one item in ≥ 4 pharmacy settlements in 30 days."""
    rule = "pharmacy_card_skimming.hoarding"
    home = _pharmacy(d)

    def buys(item: str, offsets: list[int], shops: list[int] | None = None,
             twice: int | None = None) -> tuple[int, list[int]]:
        """Purchases of ``item`` on day offsets; ``twice``: that one has two lines."""
        p, b = d.person(), _base(d, max(offsets))
        skeys = []
        for k, off in enumerate(offsets):
            when = clock(day(b + off), "18:30") + dt.timedelta(minutes=7 * k)
            lines = [(item, 1)] * (2 if k == twice else 1)
            skeys.append(d.visit(p, shops[k] if shops else home, "41", when, lines))
        return p, skeys

    p, s = buys("复方丹参滴丸", [0, 10, 20, 29])
    d.expect(rule, POSITIVE, "4次购买复方丹参滴丸，首末相隔29天（30天内）",
             person=p, item="复方丹参滴丸", settlement=s[-1])
    p, s = buys("六味地黄丸", [0, 4, 8, 12, 16, 20])
    d.expect(rule, POSITIVE, "20天内6次购买六味地黄丸", person=p, item="六味地黄丸",
             settlement=s[-1])
    shops = [int(i) for i in d.rng.choice(d.world.pharmacies, 4, replace=False)]
    p, s = buys("速效救心丸", [0, 5, 10, 15], shops=shops)
    d.expect(rule, POSITIVE, "15天内在4家药店购买速效救心丸", person=p, item="速效救心丸",
             settlement=s[-1])
    p, s = buys("连花清瘟胶囊", [0, 10, 20, 30])
    d.expect(rule, DECOY, "4次购买，首末相隔30天，超出30天区间", person=p,
             item="连花清瘟胶囊", settlement=s[-1])
    p, s = buys("脑心通胶囊", [0, 5, 10], twice=1)
    d.expect(rule, DECOY, "3次结算共4条明细（一次结算两条同药明细算一次购买）", person=p,
             item="脑心通胶囊", settlement=s[-1])
    p, s = buys("蒲地蓝消炎片", [0, 0, 7])
    d.expect(rule, DECOY, "同一天两笔结算加7天后一笔，共3次购买", person=p,
             item="蒲地蓝消炎片", settlement=s[-1])
    d.expect(rule, DECOY, "同一天的第二笔（只有3次购买，不应计为4次）", person=p,
             item="蒲地蓝消炎片", settlement=s[1])
    p, s = buys("感冒灵颗粒", [0, 3, 6, 9])
    r = d.reverse(s[-1])
    d.expect(rule, DECOY, "10天内4次，但第4次已冲销", person=p, item="感冒灵颗粒",
             settlement=s[-1])
    d.expect(rule, DECOY, "上一条已冲销购药的冲销行", person=p, item="感冒灵颗粒",
             settlement=r)


def impossible_travel(d: Draft) -> None:
    """pharmacy_card_skimming.impossible_travel: two pooling areas < 3 hours apart."""
    rule = "pharmacy_card_skimming.impossible_travel"
    w = d.world
    fuzhou, xiamen = int(w.outside["3501"][0][0]), int(w.outside["3502"][0][0])
    hangzhou_shop = int(w.outside["3301"][1][0])
    (h,) = _hospitals(d, 1)
    shop = _pharmacy(d)
    nearby = next(int(i) for i in d.rng.permutation(w.pharmacies)
                  if w.inst_region[i] != w.inst_region[h])

    def two(first: tuple[int, str, str], second: tuple[int, str, str],
            person: int | None = None) -> tuple[int, int]:
        """Two settlements of one person: (institution, medical type, hh:mm) each."""
        p = person if person is not None else d.person()
        b = _base(d, 1)
        skeys = []
        for inst, mtype, hhmm in (first, second):
            items = [("感冒灵颗粒", 1)] if mtype == "41" else [("挂号费", 1), ("门诊诊查费", 1)]
            skeys.append(d.visit(p, inst, mtype, clock(day(b), hhmm), items,
                                 dx=None if mtype == "41" else "J06.900"))
        return p, skeys[1]

    p, s = two((shop, "41", "10:00"), (fuzhou, "11", "12:59"))
    d.expect(rule, POSITIVE, "10:00在宁德药店购药，2小时59分后在福州就诊", person=p,
             settlement=s)
    p, s = two((xiamen, "11", "08:00"), (shop, "41", "08:30"),
               person=d.person(region="350203"))
    d.expect(rule, POSITIVE, "厦门参保人08:00在厦门就诊，30分钟后在宁德药店购药", person=p,
             settlement=s)
    p, s = two((h, "11", "14:00"), (hangzhou_shop, "41", "15:10"))
    d.expect(rule, POSITIVE, "14:00在宁德医院就诊，70分钟后在杭州药店购药", person=p,
             settlement=s)
    p, s = two((shop, "41", "09:00"), (fuzhou, "11", "12:00"))
    d.expect(rule, DECOY, "宁德09:00与福州12:00，恰好相隔3小时", person=p, settlement=s)
    p, s = two((h, "11", "09:00"), (nearby, "41", "09:40"))
    d.expect(rule, DECOY, "40分钟内两地结算，但同属宁德3509统筹区（区划代码不同）", person=p,
             settlement=s)
    p, s = two((shop, "41", "10:00"), (fuzhou, "11", "11:00"))
    r = d.reverse(s)
    d.expect(rule, DECOY, "1小时后在福州就诊，但该结算已冲销", person=p, settlement=s)
    d.expect(rule, DECOY, "上一条已冲销结算的冲销行", person=p, settlement=r)


# One set of a sub-rule's cases per call.
PER_COPY = (readmission, idle_stay, elsewhere_during_stay, repeated_line, bed_days_beyond_stay,
            daily_cap, exclusive_items, over_price_cap, wrong_gender, hoarding,
            impossible_travel)
# All sets at once: each set needs institutions (or items) no other set uses.
ALL_COPIES = (billed_more_than_bought, monthly_growth, offsite_burst)


def inject(d: Draft, copies: int) -> None:
    """Every sub-rule's cases, ``copies`` times."""
    for family in PER_COPY:
        for _ in range(copies):
            family(d)
    for spread_family in ALL_COPIES:
        spread_family(d, copies)

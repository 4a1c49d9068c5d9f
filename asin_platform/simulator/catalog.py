"""Static catalogue of the synthetic market: categories, their BSR calibration, seasonality, keywords.

Everything here is plain data. ``market.py`` draws products from it; features and tests read the
calibration from here (``SALES_PRIOR`` for ``core.sales.default_calibration``, ``CATEGORY_CALIBRATION``,
``SITE_SCALE``) or from ``Market.calibration(site)``.

Power law (per site x category): ``sales_per_day = A_site * bsr_root ** -b`` with
``A_site = A_us * SITE_SCALE[site]``. The sub-category rank is the root rank scaled by the
sub-category's share of the category, so ``sales = A_site * share**b * bsr_sub ** -b``.
"""

from __future__ import annotations

from dataclasses import dataclass

from asin_platform.core.sales import PowerLawPrior

# Contract site list; the index is the site's stable id in every seeded stream (never reorder).
SITE_IDS: tuple[str, ...] = ("US", "UK", "DE", "FR", "JP", "CA", "IT", "ES", "IN", "MX", "BR")

# Relative market size: scales sales (A), category sizes (max rank) and keyword search volumes.
SITE_SCALE: dict[str, float] = {
    "US": 1.0,
    "UK": 0.25,
    "DE": 0.30,
    "FR": 0.18,
    "JP": 0.35,
    "CA": 0.12,
    "IT": 0.12,
    "ES": 0.10,
    "IN": 0.15,
    "MX": 0.06,
    "BR": 0.06,
}

# Local currency per USD and the display convention (JP/IN prices are whole numbers).
CURRENCY: dict[str, tuple[str, float, bool]] = {
    "US": ("USD", 1.0, False),
    "UK": ("GBP", 0.8, False),
    "DE": ("EUR", 0.92, False),
    "FR": ("EUR", 0.92, False),
    "JP": ("JPY", 150.0, True),
    "CA": ("CAD", 1.35, False),
    "IT": ("EUR", 0.92, False),
    "ES": ("EUR", 0.92, False),
    "IN": ("INR", 83.0, True),
    "MX": ("MXN", 17.0, False),
    "BR": ("BRL", 5.0, False),
}


@dataclass(frozen=True)
class Subcategory:
    """A leaf of the category tree. ``share`` is its fraction of the category's ranked products,
    so its ranks are the root ranks scaled by ``share``."""

    id: str
    path: tuple[str, ...]  # below the root category name
    share: float
    heads: tuple[str, ...]  # head search terms: product nouns and keyword stems
    head_volume: tuple[int, ...]  # US monthly search volume of each head term


@dataclass(frozen=True)
class Category:
    """A root category with its power law, size, price level and seasonality."""

    id: str
    name: str
    a: float  # US units/day at root rank 1 (power-law scale)
    b: float  # power-law exponent, in [0.9, 1.05]
    max_rank: int  # US category size: the worst root rank
    weight: float  # share of the tracked universe
    price_median: float  # USD
    weekly_amp: float  # amplitude of the weekday pattern
    yearly_amp: float  # amplitude of the yearly cosine
    yearly_peak_doy: int  # day of year of the yearly peak
    modifiers: tuple[str, ...]  # keyword modifiers ("" = the bare head term)
    title_phrases: tuple[str, ...]
    subcategories: tuple[Subcategory, ...]


# fmt: off
CATEGORIES: tuple[Category, ...] = (
    Category(
        "beauty", "Beauty & Personal Care", 8.0e4, 0.98, 1_200_000, 0.16, 18.0, 0.10, 0.08, 345,
        ("", "for women", "organic", "for sensitive skin"),
        ("Travel Size", "Cruelty Free", "Vegan", "Gift Set", "Fragrance Free", "Dermatologist Tested",
         "for All Skin Types", "2 Pack", "Paraben Free", "with Vitamin E"),
        (
            Subcategory("beauty-serums", ("Skin Care", "Face", "Serums"), 0.06,
                        ("vitamin c serum", "hyaluronic acid serum", "retinol serum"), (48000, 33000, 27000)),
            Subcategory("beauty-hair", ("Hair Care", "Shampoo & Conditioner"), 0.09,
                        ("argan oil shampoo", "sulfate free shampoo", "hair mask"), (22000, 30000, 41000)),
            Subcategory("beauty-lips", ("Makeup", "Lips", "Lip Balms"), 0.04,
                        ("lip balm", "tinted lip oil", "lip scrub"), (61000, 18000, 12000)),
        ),
    ),
    Category(
        "kitchen", "Home & Kitchen", 7.0e4, 1.00, 1_600_000, 0.15, 25.0, 0.09, 0.12, 330,
        ("", "stainless steel", "best", "non stick"),
        ("Dishwasher Safe", "BPA Free", "Heat Resistant", "Set of 6", "Food Grade", "Easy Clean",
         "Professional Grade", "with Lid", "Rust Proof", "Ergonomic Handle"),
        (
            Subcategory("kitchen-cookware", ("Kitchen & Dining", "Cookware", "Pans"), 0.05,
                        ("frying pan", "cast iron skillet", "saucepan"), (74000, 52000, 20000)),
            Subcategory("kitchen-utensils", ("Kitchen & Dining", "Kitchen Utensils & Gadgets"), 0.08,
                        ("silicone spatula", "garlic press", "measuring cups"), (26000, 19000, 24000)),
            Subcategory("kitchen-storage", ("Kitchen & Dining", "Storage & Organization"), 0.06,
                        ("food storage containers", "spice rack", "glass jars"), (58000, 31000, 22000)),
        ),
    ),
    Category(
        "pet", "Pet Supplies", 3.5e4, 0.95, 600_000, 0.11, 20.0, 0.08, 0.05, 160,
        ("", "for large dogs", "for small dogs", "natural"),
        ("Vet Approved", "Durable", "Non Toxic", "Machine Washable", "Grain Free", "Value Pack",
         "Chew Resistant", "All Breeds", "Odor Control", "Made in USA"),
        (
            Subcategory("pet-dog-toys", ("Dogs", "Toys", "Chew Toys"), 0.07,
                        ("dog chew toy", "squeaky dog toy", "puzzle feeder"), (45000, 21000, 15000)),
            Subcategory("pet-cat-litter", ("Cats", "Litter & Housebreaking"), 0.05,
                        ("clumping cat litter", "litter box", "litter mat"), (39000, 47000, 16000)),
            Subcategory("pet-treats", ("Dogs", "Food", "Treats"), 0.08,
                        ("dog treats", "dental chews", "training treats"), (83000, 36000, 19000)),
        ),
    ),
    Category(
        "toys", "Toys & Games", 6.0e4, 1.03, 1_000_000, 0.12, 22.0, 0.14, 0.35, 350,
        ("", "for kids 3-5", "for toddlers", "educational"),
        ("STEM Toy", "Gift for Boys and Girls", "Ages 3+", "Birthday Gift", "Non Toxic", "Travel Friendly",
         "1000 Pieces", "Rechargeable", "Family Game Night", "Montessori"),
        (
            Subcategory("toys-building", ("Building Toys", "Building Sets"), 0.06,
                        ("magnetic tiles", "building blocks", "marble run"), (68000, 44000, 23000)),
            Subcategory("toys-puzzles", ("Puzzles", "Jigsaw Puzzles"), 0.05,
                        ("jigsaw puzzle", "wooden puzzle", "3d puzzle"), (51000, 17000, 14000)),
            Subcategory("toys-crafts", ("Arts & Crafts", "Craft Kits"), 0.07,
                        ("slime kit", "bead kit", "painting kit"), (33000, 18000, 21000)),
        ),
    ),
    Category(
        "sports", "Sports & Outdoors", 4.0e4, 0.93, 1_400_000, 0.11, 28.0, 0.07, 0.20, 170,
        ("", "for beginners", "heavy duty", "portable"),
        ("Non Slip", "Lightweight", "Waterproof", "with Carry Bag", "Adjustable", "Extra Thick",
         "Quick Dry", "Foldable", "Outdoor", "Premium"),
        (
            Subcategory("sports-yoga", ("Exercise & Fitness", "Yoga", "Mats"), 0.05,
                        ("yoga mat", "resistance bands", "foam roller"), (90000, 66000, 27000)),
            Subcategory("sports-camping", ("Outdoor Recreation", "Camping & Hiking"), 0.07,
                        ("camping lantern", "sleeping bag", "hammock"), (28000, 35000, 40000)),
            Subcategory("sports-cycling", ("Cycling", "Accessories"), 0.04,
                        ("bike light", "bike lock", "cycling gloves"), (25000, 22000, 9000)),
        ),
    ),
    Category(
        "electronics-accessories", "Electronics", 9.0e4, 1.05, 1_800_000, 0.14, 14.0, 0.06, 0.15, 352,
        ("", "fast charging", "for iphone", "2 pack"),
        ("Fast Charging", "Braided", "6ft", "Compatible with iPhone and Samsung", "Shockproof",
         "Wireless", "USB C", "Slim Fit", "with Stand", "Tangle Free"),
        (
            Subcategory("electronics-cables", ("Accessories & Supplies", "Cables", "USB Cables"), 0.05,
                        ("usb c cable", "lightning cable", "hdmi cable"), (110000, 70000, 60000)),
            Subcategory("electronics-cases", ("Cell Phones & Accessories", "Cases"), 0.10,
                        ("phone case", "screen protector", "phone grip"), (150000, 95000, 24000)),
            Subcategory("electronics-chargers", ("Accessories & Supplies", "Chargers"), 0.06,
                        ("wireless charger", "power bank", "wall charger"), (80000, 88000, 43000)),
        ),
    ),
    Category(
        "home", "Home & Living", 7.5e4, 0.97, 2_000_000, 0.13, 30.0, 0.08, 0.10, 15,
        ("", "queen size", "modern", "set of 2"),
        ("Soft Microfiber", "Machine Washable", "Decorative", "Easy Assembly", "Space Saving",
         "Hypoallergenic", "Boho Style", "Waterproof", "Set of 4", "Farmhouse"),
        (
            Subcategory("home-bedding", ("Bedding", "Sheets & Pillowcases"), 0.07,
                        ("bed sheets", "throw blanket", "pillow cases"), (120000, 64000, 30000)),
            Subcategory("home-decor", ("Home Décor", "Candles & Holders"), 0.06,
                        ("scented candles", "wall art", "artificial plants"), (56000, 47000, 38000)),
            Subcategory("home-storage", ("Storage & Organization", "Baskets & Bins"), 0.06,
                        ("storage bins", "closet organizer", "under bed storage"), (44000, 35000, 18000)),
        ),
    ),
    Category(
        "baby", "Baby", 2.5e4, 0.90, 400_000, 0.08, 20.0, 0.06, 0.04, 120,
        ("", "for newborn", "organic", "bpa free"),
        ("BPA Free", "Newborn Essentials", "Soft Silicone", "Baby Shower Gift", "Dishwasher Safe",
         "0-12 Months", "Hypoallergenic", "Pediatrician Recommended", "Unisex", "Portable"),
        (
            Subcategory("baby-feeding", ("Feeding", "Bottles"), 0.08,
                        ("baby bottles", "silicone bib", "sippy cup"), (46000, 22000, 26000)),
            Subcategory("baby-diapering", ("Diapering", "Wipes"), 0.07,
                        ("baby wipes", "diaper bag", "changing pad"), (70000, 52000, 21000)),
            Subcategory("baby-nursery", ("Nursery", "Sound Machines"), 0.05,
                        ("white noise machine", "baby monitor", "night light"), (41000, 73000, 29000)),
        ),
    ),
)

CATEGORY_BY_ID: dict[str, Category] = {c.id: c for c in CATEGORIES}

# (A, b) of the root power law per category on the US site; multiply A by SITE_SCALE[site] elsewhere.
CATEGORY_CALIBRATION: dict[str, tuple[float, float]] = {c.id: (c.a, c.b) for c in CATEGORIES}

# The market's BSR -> sales law as core's prior: what features and labels estimate sales with.
SALES_PRIOR = PowerLawPrior(us_curves=CATEGORY_CALIBRATION, site_scale=SITE_SCALE)

# Weekday shape (Mon..Sun): online demand peaks Sunday/Monday and dips Friday/Saturday.
WEEKDAY_SHAPE: tuple[float, ...] = (0.6, 0.25, 0.0, -0.1, -0.55, -1.0, 0.8)

BRAND_SYLLABLES: tuple[str, ...] = (
    "lu", "mo", "ra", "ve", "ni", "ka", "zo", "ta", "ri", "sa", "no", "be", "el", "fi", "xo",
    "qu", "ar", "en", "do", "pi", "sol", "mar", "vin", "tor", "lia", "bri", "cor", "dex",
)
RESELLERS: tuple[str, ...] = (
    "Prime Deals Co", "BlueRiver Trading", "Northwind Goods", "Summit Retail", "Oakline Supply",
    "Harbor Marketplace", "Vista Commerce", "Maple & Main", "Quickship Outlet", "Brightway Store",
    "Evergreen Sellers", "Atlas Wholesale",
)
ADJECTIVES: tuple[str, ...] = (
    "Premium", "Ultra", "Classic", "Pro", "Essential", "Deluxe", "Eco", "Smart", "Original", "Advanced",
)
# fmt: on

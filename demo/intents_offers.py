"""Offer and service intents: discounts, clearance, custom orders, delivery options, accounts."""
from __future__ import annotations

from demo.spec import Intent

STUDENT = Intent(
    name="student_discount", kind="percent", mode="curt",
    templates=(
        "Do you have a student discount?",
        "Is there a discount for college students?",
        "Can students get money off?",
        "I'm at university. Any deals for me?",
        "How much is the student discount?",
        "Do students save anything at Maple & Pine?",
        "What discount do you give students?",
        "Any savings for people in school?",
    ),
    cues=((r"student|college|university|in school", 7.0),),
    fact="10%", wrong=("5%", "15%", "20%"),
    says=("Our student discount is {v} off.", "Students get {v} off every order."),
    bare=("{v} off.",),
    extras=("Just verify with your school email.", "It can't be combined with other coupons."),
)

MILITARY = Intent(
    name="military_discount", kind="percent",
    templates=(
        "Do you offer a military discount?",
        "Is there a discount for veterans?",
        "Do active duty service members get a discount?",
        "I served in the army. Do you have any deal for vets?",
        "How much is the military discount?",
        "Can veterans save at your stores?",
        "What discount do you give military families?",
        "Is there a special price for people in the armed forces?",
    ),
    cues=((r"military|veteran|\bvets?\b|service members|\barmy\b|armed forces|active duty", 7.0),),
    fact="15%", wrong=("5%", "10%", "20%"),
    says=("Military members and veterans get {v} off.", "Our military discount is {v} off."),
    bare=("{v} off.",),
    extras=("Verify once at checkout and it's saved to your account.", "It applies in stores and online."),
)

NEWSLETTER = Intent(
    name="newsletter_discount", kind="money",
    templates=(
        "Do I get a discount for joining your newsletter?",
        "What's the offer for email subscribers?",
        "Is there a coupon if I sign up for emails?",
        "If I subscribe to your mailing list, do I save anything?",
        "How much off do newsletter subscribers get?",
        "What do I get for subscribing to your emails?",
        "Is there a welcome coupon for the newsletter?",
        "Any perks for getting your marketing emails?",
    ),
    cues=((r"newsletter|subscrib|mailing list|marketing emails|sign up for emails", 7.0),),
    fact="$10", wrong=("$5", "$15", "$20"), allowed=("$50",),
    says=("Newsletter subscribers get {v} off their first order of $50 or more.",
          "Sign up for our newsletter and you'll get {v} off a first order of $50 or more."),
    bare=("{v} off your first order.",),
    extras=("You can unsubscribe any time.", "We send about two emails a week."),
)

BULK = Intent(
    name="bulk_orders", kind="percent",
    templates=(
        "Do you give discounts on bulk orders?",
        "If I buy 20 mugs, do I get a better price?",
        "Is there a volume discount?",
        "I'm furnishing an office. Do you discount large quantities?",
        "What discount is there for buying in bulk?",
        "Do I save if I order lots of the same item?",
        "Are there wholesale prices for big orders?",
        "Any price break when buying a dozen or more?",
    ),
    cues=((r"bulk|volume|quantit|wholesale|dozen|big orders|lots of the same|buy \d+ \w+", 7.0),),
    fact="5%", wrong=("10%", "15%", "20%"),
    says=("Orders of 10 or more of the same item get {v} off.", "Buy 10 or more of one item and you save {v}."),
    bare=("{v} off 10+ items.",),
    extras=("For really large orders, our business team can quote a custom price.",
            "The discount is applied automatically in your cart."),
)

CLEARANCE = Intent(
    name="clearance_sale", kind="named",
    templates=(
        "Can I return clearance items?",
        "Are sale items final?",
        "What's the return policy on clearance?",
        "I bought something marked down. Can I send it back?",
        "Are discounted clearance products returnable?",
        "Can I get a refund on something from the clearance section?",
        "Do clearance purchases have the same return rules?",
        "If I buy from the bargain corner, is that a final sale?",
    ),
    cues=((r"clearance|marked down|bargain|sale items|final sale", 8.0),),
    fact="final sale", wrong=("fully refundable", "exchange only"),
    says=("Clearance items are {v}.", "Anything from clearance is {v}."),
    bare=("{v}.",),
    extras=("Check the item details before you buy.", "Regular-price items still have our 30-day return window."),
)

CUSTOM = Intent(
    name="custom_orders", kind="weeks", mode="generic",
    templates=(
        "How long do custom orders take?",
        "Can I order a sofa in a custom fabric?",
        "What's the lead time for made-to-order pieces?",
        "If I pick my own fabric, how long will I wait?",
        "How long does a made-to-order piece take to arrive?",
        "Do you make custom pieces, and how long does it take?",
        "What's the wait for a custom order?",
        "Can you make something bespoke for me? What's the timeline?",
    ),
    cues=((r"\bcustom\b|made-to-order|made to order|bespoke|my own fabric", 8.0),),
    fact="6-8 weeks", wrong=("2-3 weeks", "4-5 weeks", "10-12 weeks"),
    says=("Custom orders take {v} to make and deliver.", "Made-to-order pieces take {v}."),
    bare=("{v}.",),
    extras=("We'll mail you a fabric swatch to approve first.", "You'll get updates by email while it's being made."),
)

WHITE_GLOVE = Intent(
    name="white_glove_delivery", kind="money",
    templates=(
        "Do you offer white glove delivery?",
        "Can your team carry furniture inside and place it for me?",
        "How much is in-home delivery for big furniture?",
        "Will the delivery crew bring a big piece upstairs for me?",
        "What does white glove delivery cost?",
        "Is there a premium delivery where they bring it into the room?",
        "Can I pay for delivery into my home instead of the curb?",
        "Do your drivers haul heavy items inside the house?",
    ),
    cues=((r"white glove|(carry|bring|haul)\b.*\binside\b|upstairs|into (the|my) (room|home)|in-home|\bcurb\b|"
           r"premium delivery", 7.0),),
    fact="$99", wrong=("$49", "$149", "$199"),
    says=("White glove delivery is {v}, and we carry it to the room of your choice.",
          "For {v}, our white glove team brings it inside to any room."),
    bare=("{v}.",),
    extras=("They also take the packaging away.", "Book it at checkout for any furniture order."),
)

SWATCHES = Intent(
    name="fabric_swatches", kind="swatches", mode="generic",
    templates=(
        "Can I get fabric samples?",
        "Do you send free swatches?",
        "How many fabric swatches can I order?",
        "Before buying curtains, can I see the material?",
        "Are swatches free?",
        "Can you mail me some fabric samples?",
        "How do I request swatches?",
        "Could I feel the fabric before I order a duvet cover?",
    ),
    cues=((r"swatch|sample|feel the fabric|see the material", 8.0),),
    fact="5 swatches", wrong=("2 swatches", "3 swatches", "10 swatches"),
    says=("You can order up to {v} for free.", "We mail up to {v} at no cost."),
    bare=("Up to {v}, free.",),
    extras=("They arrive in about a week.", "Request them from any product page."),
)

EMAIL_RESPONSE = Intent(
    name="email_response_time", kind="nhours",
    templates=(
        "How long does it take you to answer emails?",
        "When will I hear back from customer service?",
        "How fast do you reply to messages?",
        "I emailed support yesterday. When should I expect a response?",
        "What's your email response time?",
        "How quickly does your support team respond?",
        "How soon do you answer support emails?",
        "If I write to your help desk, how long until someone gets back to me?",
    ),
    cues=((r"hear back|\brepl|respon|answer (support )?(emails|messages)|gets? back to me", 8.0),),
    fact="24 hours", wrong=("2 hours", "48 hours", "72 hours"),
    says=("We reply to emails within {v}.", "Our support team answers every email within {v}."),
    bare=("Within {v}.",),
    extras=("Live chat is faster during store hours.", "Include your order number so we can help quicker."),
)

ACCOUNT_DELETE = Intent(
    name="account_delete", kind="days", mode="generic",
    templates=(
        "How do I delete my account?",
        "Can you close my Maple & Pine account?",
        "Please remove my account and data.",
        "I want you to erase all my personal information. How?",
        "How long does it take to delete my account?",
        "Can I have my account deactivated?",
        "What's the process for removing my data?",
        "I'd like my profile wiped from your systems.",
    ),
    cues=((r"delete|close my|remove my|\berase|deactivat|wiped|removing my", 8.0),),
    fact="10 days", wrong=("3 days", "30 days", "90 days"),
    says=("Email privacy@mapleandpine.com and we'll delete your account within {v}.",
          "Send a request to privacy@mapleandpine.com, and your account is deleted within {v}."),
    bare=("Email privacy@mapleandpine.com. Done within {v}.",),
    extras=("Your order history is removed too.", "You'll get a confirmation email when it's done."),
)

GIFT_RECEIPT = Intent(
    name="gift_receipt", kind="named",
    templates=(
        "How do returns work with a gift receipt?",
        "I got a present from you with a gift receipt. Can I return it?",
        "What do I get back if I return a gift?",
        "Someone gave me this as a gift. What happens if I bring it back?",
        "Do gift receipt returns get a refund or credit?",
        "Can I return something I received as a gift?",
        "How are gift returns refunded?",
        "My cousin bought me a lamp here. If I take it back, what do I receive?",
    ),
    cues=((r"gift receipt|\ba gift\b(?! card)|a present|bought me|gift returns", 8.0),),
    fact="store credit", wrong=("cash back", "a bank transfer"),
    says=("Gift returns are refunded as {v}, so the buyer isn't told.", "With a gift receipt, you get {v} for the "
                                                                        "item."),
    bare=("{v}.",),
    extras=("Bring the gift receipt or the order number.", "The usual 30-day return window applies."),
)

FINANCING = Intent(
    name="financing", kind="money",
    templates=(
        "Do you offer financing?",
        "Can I pay in installments?",
        "Is there a buy now, pay later option?",
        "Can I split the cost of a big purchase over a few months?",
        "What's the minimum order for payment plans?",
        "Do you have monthly payments on furniture?",
        "Can I spread out my payments?",
        "Is interest-free financing available for pricier items?",
    ),
    cues=((r"financ|installment|pay later|payment plan|monthly payments|split the cost|spread out", 8.0),),
    fact="$150", wrong=("$100", "$300", "$500"),
    says=("You can pay in 4 interest-free installments on orders over {v}.",
          "Orders over {v} can be split into 4 interest-free payments."),
    bare=("Orders over {v}, 4 payments.",),
    extras=("Choose it at checkout, with no fees.", "Approval takes about a minute."),
)

REGISTRY = Intent(
    name="registry", kind="percent",
    templates=(
        "Do you have a wedding registry?",
        "How does your gift registry work?",
        "Is there a discount for registry items after the wedding?",
        "We're getting married. Can we list things we want from your store?",
        "What perks come with a Maple & Pine registry?",
        "Can I create a baby registry?",
        "What's the completion discount on registries?",
        "My partner and I want a wish list for our housewarming. Do you do that?",
    ),
    cues=((r"registr|getting married|wish list|wedding", 8.0),),
    fact="20%", wrong=("10%", "15%", "25%"),
    says=("Registry owners get {v} off anything left on the list after the event.",
          "Yes, and after the event you get {v} off whatever is still on your registry."),
    bare=("{v} off what's left.",),
    extras=("Guests can buy in store or online.", "You can create one in about five minutes."),
)

CHANGE_ADDRESS = Intent(
    name="change_address", kind="named", optional=("order",), forbids=("city",),
    templates=(
        "How do I change my shipping address?",
        "Can I update the address on order {order}?",
        "I moved. Can you send my order to a new address?",
        "I typed the wrong street on order {order}. Can you fix it?",
        "Is it possible to change where my order is delivered?",
        "I need to edit the delivery address for order {order}.",
        "Can I redirect my package to my office?",
        "Oops, I gave you my old address. Can that be corrected?",
    ),
    cues=((r"address|wrong street|redirect|where my order is delivered", 7.0),),
    fact="until it ships", wrong=("only within 10 minutes of ordering", "only before payment is taken"),
    says=("You can change the address from the My Orders page {v}.",
          "The address on order {order} can be changed from the My Orders page {v}."),
    bare=("From My Orders, {v}.",),
    extras=("After that, the carrier can sometimes reroute it.",
            "Double-check the ZIP code so the shipping cost stays right."),
)

INTENTS = (STUDENT, MILITARY, NEWSLETTER, BULK, CLEARANCE, CUSTOM, WHITE_GLOVE, SWATCHES, EMAIL_RESPONSE,
           ACCOUNT_DELETE, GIFT_RECEIPT, FINANCING, REGISTRY, CHANGE_ADDRESS)
